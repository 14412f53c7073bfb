package refresh

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// core is the shared cache of one key: every [Cache] handle for the key
// in this process points to it. Where its parts live:
//
//   - state.go: the immutable snapshot of the token and its schedule, read
//     lock-free by Cache.Token (cur);
//   - flight.go: the one operation in flight (fl), Token's slow path and
//     the backoff after failures (at least the server's Retry-After,
//     retryafter.go);
//   - protocol.go and answer.go: the lock, reload, present, persist,
//     publish path of a refresh and of an Exchange (exchange.go);
//   - persist.go: saving before use, reduced sets and save retries;
//   - timer.go: the timer; reject.go: the rate limit of refreshes forced by
//     rejected tokens; clear.go: Clear; token.go: the token type and its
//     conversion at the public edges.
type core struct {
	key    string
	up     Upstream
	o      Options
	locker Locker // o.Persister as a Locker, or nil

	cur   atomic.Pointer[state] // read lock-free by Token
	waits atomic.Int64          // callers that had to wait on a refresh (tests)

	refs    int           // guarded by registry.mu
	closing bool          // guarded by registry.mu
	gone    chan struct{} // closed after the last handle's Close completes

	// active counts operations from start until their events are emitted
	// and their waiters released; shutdown waits for it. Add happens under
	// mu, only while !closed.
	active sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	fl          *flight    // operation in flight, nil if none
	timer       *time.Timer
	closed      bool
	failures    int                     // consecutive failed (or no-progress, or dead-on-arrival) refreshes
	nextAttempt time.Time               // no new refresh before this (backoff)
	lastErr     error                   // error of the last failed refresh, returned during backoff
	saveFails   int                     // consecutive failed save retries (0: the next access retries at once)
	nextSave    time.Time               // no save retry before this (the timer waits for it)
	suspectRT   string                  // refresh token presented when a refresh failed in transit (answer.go)
	rejects     map[string]*rejectState // rate limits of refreshes forced by rejected tokens, per origin
	rtWarned    string                  // refresh token for which EventRefreshTokenExpiring was emitted
	// deadErr is why the grant died (the server's invalid_grant, or the
	// stored token removed by another process). A later refresh without a
	// refresh token returns it instead of its own "not logged in", so the
	// caller hears the cause; a new token (a login, an adoption) or Clear
	// ends it.
	deadErr error

	// After a Clear that could not delete the stored token: that token
	// (cleared), or, when it is unknown, any stored token (clearedAny), is
	// never loaded or adopted (clear.go).
	cleared    *token
	clearedAny bool
}

func newCore(key string, up Upstream, o Options) *core {
	c := &core{key: key, up: up, o: o, gone: make(chan struct{})}
	if l, ok := o.Persister.(Locker); ok {
		c.locker = l
	}
	return c
}

// set implements Cache.Set: a login's token, published under persistence
// before use, like a refresh's.
func (c *core) set(ctx context.Context, tok *oauth2.Token) error {
	if tok == nil || tok.AccessToken == "" {
		return errors.New("refresh: Set: token without an access token")
	}
	t, err := c.validate(fromOAuth2(tok), nil)
	if err != nil {
		return err
	}
	f, err := c.acquire(ctx, opSet)
	if err != nil {
		return err
	}
	f.err = c.doSet(ctx, f, t)
	c.finish(f)
	if f.err != nil {
		return f.err
	}
	return f.persistErr // published anyway, and the save is retried
}

func (c *core) doSet(ctx context.Context, f *flight, t *token) error {
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	c.forgetCleared() // a new login: the store's token counts again
	ns := c.newState(t, time.Now(), fromUpstream)
	ns.dead = false // a login's token is no refresh: nothing to back off from
	c.persistNew(ctx, f, ns, basis{})
	c.mu.Lock()
	c.rtWarned = ""
	c.rejects = nil // a new login: nothing was rejected yet
	c.deadErr = nil
	c.mu.Unlock()
	c.cur.Store(ns) // not publish: a login's token is never forced
	return nil
}

// shutdown stops the core after its last handle is closed.
func (c *core) shutdown() {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	// Wait for the operation in flight, its events included: no event is
	// emitted after Close returns.
	c.active.Wait()
	c.finalSave()
}
