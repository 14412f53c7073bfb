package refresh

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// Single-flight.
//
// At most one operation runs per key in a process: a refresh, a save retry,
// Set, Clear or Exchange. core.fl is the one in flight; it is set under
// core.mu before the operation starts, so no second caller can start
// another in between (the window google-cloud-go's isRefreshRunning leaves
// open). Token's callers that have no usable token join a refresh in
// flight instead of starting one; Set, Clear and Exchange wait for the
// operation in flight and then make theirs the one (acquire).

// opKind says what a flight does.
type opKind int

const (
	opRefresh  opKind = iota // lock, reload, adopt or call the Upstream, save, publish (protocol.go)
	opPersist                // retry saving an unsaved or partial token (persist.go)
	opSet                    // publish a token handed to Set (cache.go)
	opClear                  // forget the token: delete it from the Persister and memory (clear.go)
	opExchange               // run an Exchange function with the full token (exchange.go)
)

// flight is the one operation in progress for a key. The fields below
// done are written by the operation before done is closed and read only
// after (or by the operation itself).
type flight struct {
	op         opKind
	background bool         // started at the advisory point or by the timer: no caller waits for it
	fn         exchangeFunc // opExchange: the function to run
	done       chan struct{}
	waiters    atomic.Int32 // callers that joined this refresh on Token's slow path

	start      time.Time
	err        error   // the operation failed
	persistErr error   // the operation succeeded but its new token's save failed (reported once, in evs)
	evs        []Event // emitted by finish, before done is closed
	noProgress bool    // the Upstream returned the token the cache already had
	published  bool    // a new token was published
	deadGrant  bool    // the grant was found dead (moved to re-authentication)
}

// event records e, to be emitted when f finishes.
func (f *flight) event(e Event) {
	e.Background = f.background
	f.evs = append(f.evs, e)
}

// token is Token's slow path: the token is not fresh (or there is none).
func (c *core) token(ctx context.Context) (*oauth2.Token, error) {
	for i := 0; ; i++ {
		now := time.Now()
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		s := c.cur.Load()
		if s.usable(now) {
			switch {
			case s.save.pending() && c.fl == nil && (c.saveFails == 0 || !now.Before(c.nextSave)):
				// The token is newer than the stored one: retry the save on
				// this access, in the background. The token is valid, so
				// nobody waits for the store.
				c.startLocked(ctx, opPersist, true)
			case c.wantRefreshLocked(s, now):
				c.startLocked(ctx, opRefresh, true)
			case s.fresh != now.Before(s.advisoryAt) && !s.save.pending() && !s.invalid:
				// Keep the fast-path flag honest (the timer may be late).
				n := s.clone()
				n.fresh = !n.fresh
				if c.cur.CompareAndSwap(s, n) {
					c.armLocked(now) // a fresh state always has its timer armed
				}
			}
			c.mu.Unlock()
			return s.pub, nil
		}
		// No usable token: first call, invalidated, or in the mandatory
		// window. Join the refresh in flight or start one.
		f := c.fl
		if f == nil {
			if now.Before(c.nextAttempt) {
				// Backing off after a failure: do not hammer the server.
				// A valid token is still served; an expired or invalidated
				// one never is.
				err := c.lastErr
				c.mu.Unlock()
				if s.servable(now) {
					return s.pub, nil
				}
				return nil, unavailable(err, s)
			}
			f = c.startLocked(ctx, opRefresh, false)
		}
		if f.op == opRefresh {
			// Counted under c.mu, so finish, which clears c.fl under it,
			// sees every caller that joined.
			c.waits.Add(1)
			f.waiters.Add(1)
		}
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.op != opRefresh && i < 4 {
			continue // another operation held the key: look again
		}
		s = c.cur.Load()
		if s.servable(time.Now()) {
			return s.pub, nil // new, or the old one still valid after a failure
		}
		if f.err != nil {
			return nil, f.err
		}
		if s == nil {
			return nil, &Error{msg: "refresh: no token"}
		}
		return nil, unavailable(nil, s)
	}
}

// unavailable is Token's error when no token may be served: the last
// refresh error, else (the refresh brought no new token) a temporary one.
func unavailable(err error, s *state) error {
	switch {
	case err != nil:
		return err
	case s == nil:
		return &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: no token yet (backing off)"}
	}
	return &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: the token expired or was rejected and no new one was issued (backing off)"}
}

// wantRefreshLocked reports whether a background refresh should start now.
func (c *core) wantRefreshLocked(s *state, now time.Time) bool {
	return s != nil && c.fl == nil && !c.closed && !s.reauth &&
		(s.invalid || !now.Before(s.advisoryAt)) && !now.Before(c.nextAttempt)
}

// startLocked starts op on its own goroutine and makes it the one in
// flight. The operation runs under context.WithoutCancel(ctx) with a
// deadline (see run): no single caller can cancel it, and it keeps ctx's
// values.
func (c *core) startLocked(ctx context.Context, op opKind, background bool) *flight {
	f := &flight{op: op, background: background, done: make(chan struct{})}
	if c.closed {
		f.err = ErrClosed
		close(f.done)
		return f
	}
	c.active.Add(1)
	c.fl = f
	if ctx == nil {
		ctx = context.Background()
	}
	go c.run(context.WithoutCancel(ctx), f)
	return f
}

// acquire waits until no operation is in flight and then makes op the one
// in flight, for operations that run on the caller's goroutine (Set,
// Clear, Exchange). The caller must hand the flight to finish.
func (c *core) acquire(ctx context.Context, op opKind) (*flight, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if f := c.fl; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		f := &flight{op: op, done: make(chan struct{}), start: time.Now()}
		c.active.Add(1)
		c.fl = f
		c.mu.Unlock()
		return f, nil
	}
}

// run performs f, started by startLocked. The whole operation is bounded
// by LockTimeout (waiting for the store lock) plus RefreshTimeout (the
// work); each part is bounded on its own too.
func (c *core) run(parent context.Context, f *flight) {
	budget := c.o.RefreshTimeout
	if c.locker != nil {
		budget += c.o.LockTimeout
	}
	ctx, cancel := context.WithTimeout(parent, budget)
	defer cancel()
	f.start = time.Now()
	switch f.op {
	case opRefresh:
		f.err = c.refresh(ctx, f)
	case opPersist:
		c.persist(ctx, f)
	}
	c.finish(f)
}

// finish records f's outcome (backoff after a failure), re-arms the
// timer, emits f's events and releases the waiters.
func (c *core) finish(f *flight) {
	now := time.Now()
	c.mu.Lock()
	c.fl = nil
	switch f.op {
	case opRefresh:
		s := c.cur.Load()
		switch {
		case f.err != nil, f.noProgress:
			c.failures++
			c.lastErr = f.err
			// The server may have said how long to wait (Retry-After):
			// no attempt before then, capped so that a huge value cannot
			// stop refreshes for days; the backoff when it is longer.
			wait := max(c.backoff(c.failures), retryAfter(f.err, c.o.MaxRetryAfter))
			next := now.Add(wait)
			if f.err == nil && s.servable(now) && s.expiry.Before(next) {
				// An unchanged token: back off, but no longer than it
				// lives, so a valid token is always at hand.
				next = s.expiry
			}
			c.nextAttempt = next
		default:
			c.failures, c.lastErr, c.nextAttempt = 0, nil, time.Time{}
		}
		if f.err != nil {
			k := EventRefreshFailed
			if errors.Is(f.err, ErrReauthRequired) {
				k = EventReauthRequired
			}
			e := Event{Kind: k, Time: now, Duration: now.Sub(f.start), Err: f.err}
			if s != nil {
				e.Expiry = s.expiry
			}
			f.event(e)
		}
		// Nobody can join f any more (c.fl is nil): the count is final.
		n := int(f.waiters.Load())
		for i := range f.evs {
			switch f.evs[i].Kind {
			case EventRefreshed, EventRefreshFailed, EventAdopted, EventReauthRequired:
				f.evs[i].Waiters = n
			}
		}
	case opSet:
		// A new login ends any backoff. A failed Set is its caller's
		// error alone: it leaves the refresh schedule and lastErr as they
		// were and reports no refresh failure.
		if f.err == nil {
			c.failures, c.lastErr, c.nextAttempt = 0, nil, time.Time{}
		}
	case opExchange:
		// Only a dead grant concerns the cache's own refreshes (as a
		// refresh's invalid_grant would); any other failure is the
		// Exchange caller's alone. A new token ends any backoff.
		switch {
		case f.deadGrant:
			c.failures++
			c.lastErr = f.err
			c.nextAttempt = now.Add(c.backoff(c.failures))
			e := Event{Kind: EventReauthRequired, Time: now, Duration: now.Sub(f.start), Err: f.err}
			if s := c.cur.Load(); s != nil {
				e.Expiry = s.expiry
			}
			f.event(e)
		case f.published:
			c.failures, c.lastErr, c.nextAttempt = 0, nil, time.Time{}
		}
	}
	if e, ok := c.rtWarningLocked(now); ok {
		f.evs = append(f.evs, e)
	}
	c.armLocked(now)
	c.mu.Unlock()
	for _, e := range f.evs {
		c.emit(e)
	}
	close(f.done)
	c.active.Done()
}

// backoff returns the jittered exponential delay after n failures: a
// random value in [d/2, d] with d = RetryBackoffMin * 2^(n-1), capped at
// RetryBackoffMax.
func (c *core) backoff(n int) time.Duration {
	d := c.o.RetryBackoffMin
	for i := 1; i < n && d < c.o.RetryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.o.RetryBackoffMax)
	return d/2 + time.Duration(c.o.rand()*float64(d/2))
}
