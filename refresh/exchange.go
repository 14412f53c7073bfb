package refresh

import (
	"context"

	"golang.org/x/oauth2"
)

// exchangeFunc is the function [Cache.Exchange] runs.
type exchangeFunc = func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error)

// exchange implements Cache.Exchange: the protocol of a refresh, with fn
// in the Upstream's place, on the caller's goroutine.
func (c *core) exchange(ctx context.Context, fn exchangeFunc) error {
	f, err := c.acquire(ctx, opExchange)
	if err != nil {
		return err
	}
	f.fn = fn
	s := c.cur.Load()
	var cur *token
	if s != nil {
		cur = s.full
	}
	f.err = c.protocol(ctx, f, s, cur)
	c.finish(f)
	if f.err != nil {
		return f.err
	}
	return f.persistErr // published anyway, and the save is retried
}
