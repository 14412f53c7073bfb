package refresh

import (
	"context"
	"time"
)

// The timer.
//
// Cache.Token's fast path reads no clock, so one timer per cache does the
// time-driven work: it flips the fast path's freshness flag at the advisory
// point (and looks at the wall clock at least every checkEvery, so that a
// machine that was suspended notices expiry soon after it resumes),
// refreshes an idle process's token, retries failed saves after their
// backoff, and emits the refresh token's expiry warning. armLocked sets it
// to the next moment there is work; tick does the work.

// checkEvery bounds how long a fresh token is trusted without looking at
// the wall clock (the fast path reads no clock): after a system suspend the
// cache notices an expired token within this interval of resuming.
const checkEvery = 10 * time.Second

// tick is the timer's function.
func (c *core) tick() {
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	s := c.cur.Load()
	if s != nil && s.fresh && !now.Before(s.advisoryAt) {
		n := s.clone()
		n.fresh = false
		if c.cur.CompareAndSwap(s, n) {
			s = n
		}
	}
	acted := false
	if !c.o.DisableIdleRefresh && s != nil && c.fl == nil {
		switch {
		case s.save.pending() && !now.Before(c.nextSave):
			c.startLocked(context.Background(), opPersist, true)
			acted = true
		case c.wantRefreshLocked(s, now):
			c.startLocked(context.Background(), opRefresh, true)
			acted = true
		}
	}
	e, warn := c.rtWarningLocked(now)
	if d := c.armLocked(now); d == 0 && !acted && !warn {
		// Insurance against a zero-delay timer loop: a tick that found
		// nothing to do never re-arms for "now".
		c.timer.Reset(checkEvery)
	}
	if warn {
		c.active.Add(1) // shutdown waits for this event too
	}
	c.mu.Unlock()
	if warn {
		c.emit(e)
		c.active.Done()
	}
}

// armLocked sets the timer to the next moment tick has work and returns the
// delay (-1 when the timer is stopped). An operation in flight re-arms it
// when it finishes.
func (c *core) armLocked(now time.Time) time.Duration {
	s := c.cur.Load()
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if !c.closed && s != nil && s.fresh {
		// Even while an operation is in flight (a Set, a Clear, an
		// Exchange may take a minute): the fast path reads no clock and
		// trusts this flag until the timer clears it, so a token must not
		// stay "fresh" past its advisory point, let alone its expiry.
		earliest(s.advisoryAt)
		earliest(now.Add(checkEvery))
	}
	if !c.closed && s != nil && c.fl == nil {
		if !c.o.DisableIdleRefresh {
			if s.save.pending() {
				earliest(later(c.nextSave, now))
			}
			if !s.reauth && !s.fresh {
				if s.invalid {
					earliest(later(c.nextAttempt, now))
				} else {
					earliest(later(c.nextAttempt, s.advisoryAt))
				}
			}
		}
		if w := c.rtWarnAt(s); !w.IsZero() {
			earliest(w)
		}
	}
	if at.IsZero() {
		if c.timer != nil {
			c.timer.Stop()
		}
		return -1
	}
	d := max(at.Sub(now), 0)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.tick)
	} else {
		c.timer.Reset(d)
	}
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// rtWarnAt returns when EventRefreshTokenExpiring is due for s (at
// RefreshTokenLead before the refresh token expires, once per refresh
// token), or zero.
func (c *core) rtWarnAt(s *state) time.Time {
	if c.o.RefreshTokenLead < 0 || s.rtExpiry.IsZero() || s.full.refresh == "" || c.rtWarned == s.full.refresh {
		return time.Time{}
	}
	return s.rtExpiry.Add(-c.o.RefreshTokenLead)
}

// rtWarningLocked returns EventRefreshTokenExpiring if it is due now, and
// records that it was emitted for the current refresh token.
func (c *core) rtWarningLocked(now time.Time) (Event, bool) {
	s := c.cur.Load()
	if s == nil {
		return Event{}, false
	}
	w := c.rtWarnAt(s)
	if w.IsZero() || now.Before(w) {
		return Event{}, false
	}
	c.rtWarned = s.full.refresh
	return Event{Kind: EventRefreshTokenExpiring, Time: now, Expiry: s.expiry, RefreshTokenExpiry: s.rtExpiry}, true
}
