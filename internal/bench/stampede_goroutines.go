package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/store"
)

// RunGoroutineStampede starts one client (Tokenward or XOAuth2) on a token
// that has just expired, then lets cfg.Goroutines goroutines send one API
// request each at the same moment through one shared *http.Client, and
// counts the token-endpoint calls. tokenward's client reads the expired
// token from its store; x/oauth2's gets it as its initial token, as if
// loaded from disk.
func RunGoroutineStampede(ctx context.Context, cfg StampedeConfig, which string) (StampedeResult, error) {
	cfg = cfg.withDefaults()
	res := StampedeResult{Case: "goroutines", N: cfg.Goroutines, Client: which, Grant: cfg.Grant}
	fx, err := newFixture(time.Hour, cfg.TokenLatency, cfg.InMemory, cfg.Goroutines)
	if err != nil {
		return res, err
	}
	defer fx.close()
	tok, err := fx.expiredToken(cfg.Grant)
	if err != nil {
		return res, err
	}
	dir, cleanup, err := tempDir(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()

	base := fx.newBase()
	defer closeIdle(base)
	var hc *http.Client
	switch which {
	case Tokenward:
		st, err := store.Open(ctx, storeOptions(cfg.StoreMode, dir, randomPassphrase()))
		if err != nil {
			return res, fmt.Errorf("bench: opening the store: %w", err)
		}
		remove, err := fx.seedTokenward(ctx, st, cfg.Grant, tok)
		if err != nil {
			return res, err
		}
		defer remove()
		ccfg := fx.tokenwardConfig(cfg.Grant, base)
		ccfg.Store = st
		c, err := client.New(ctx, func(opts *client.Options) { *opts = ccfg })
		if err != nil {
			return res, fmt.Errorf("bench: tokenward: %w", err)
		}
		defer c.Close()
		if hc, err = c.HTTPClient(ctx); err != nil {
			return res, fmt.Errorf("bench: tokenward: %w", err)
		}
	case XOAuth2:
		ctx := withBase(ctx, base)
		hc = oauth2.NewClient(ctx, xoauth2Source(ctx, cfg.Grant, fx.as.TokenURL(), fx.secret, tok))
	default:
		return res, fmt.Errorf("bench: unknown client %q", which)
	}
	fx.as.ResetStats()

	target := fx.target()
	errs := make([]error, cfg.Goroutines)
	startSignal := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range cfg.Goroutines {
		ready.Add(1)
		wg.Go(func() {
			ready.Done()
			<-startSignal
			errs[i] = get(ctx, hc, target)
		})
	}
	ready.Wait()
	t0 := time.Now()
	close(startSignal)
	wg.Wait()
	res.Elapsed = time.Since(t0)
	for _, err := range errs {
		res.count(err)
	}
	res.serverStats(fx.as)
	return res, ctx.Err()
}
