package refresh

import (
	"time"

	"golang.org/x/oauth2"
)

// Rejected tokens.
//
// A resource server that answers 401 invalid_token says the token is no
// good; the transport then calls Invalidate and the next Token refreshes.
// That is right for a token that was revoked, or that the server thinks
// expired earlier than we did. But a server that rejects every token (one
// issued for another audience or resource, the usual cause) would turn
// every request into a refresh: a rotation and a store write each.
//
// So only a token that has never worked, and that was itself issued in
// answer to a rejection (state.forced), is suspected when it is rejected
// in turn: it is not replaced at once. EventTokenRejected reports
// ErrTokenRejected, and the next forced refresh waits for a jittered,
// exponential backoff (the refresh backoff's RetryBackoffMin to
// RetryBackoffMax) and for twice as many rejections as the previous one
// did. Refreshes then grow with the logarithm of the rejected requests,
// never with their number. Any other token's rejection replaces it at once:
// one from an ordinary refresh or a login, and one the resource server has
// accepted (Accepted, which the transport calls for every answer but a 401
// or a 5xx: such a token works, and a later rejection means it was revoked,
// not that it was never any good). Either also ends the limit, as do a
// login and Clear.

// rejectState is the rate limit of forced refreshes; guarded by core.mu.
type rejectState struct {
	streak int       // forced tokens in a row that were rejected too
	since  int       // rejections since the streak last grew or a forced refresh was let through
	next   time.Time // no forced refresh before this
}

// invalidate implements Cache.Invalidate.
func (c *core) invalidate(tok *oauth2.Token) bool {
	for {
		s := c.cur.Load()
		if s == nil || s.pub != tok || s.invalid {
			return false
		}
		if s.forced && !c.forcedRefreshAllowed(s) {
			return false
		}
		n := s.clone()
		n.invalid, n.fresh = true, false
		if c.cur.CompareAndSwap(s, n) {
			c.o.Logger.Debug("refresh: token invalidated", "key", c.key)
			c.mu.Lock()
			if !s.forced {
				c.rejects = rejectState{} // an ordinary token: a new episode
			}
			c.armLocked(time.Now())
			c.mu.Unlock()
			return true
		}
	}
}

// accepted implements Cache.Accepted. It runs on every answered request
// of the transport: one atomic load and a compare unless tok is a forced
// token the resource server accepts for the first time.
func (c *core) accepted(tok *oauth2.Token) {
	for {
		s := c.cur.Load()
		if s == nil || !s.forced || s.pub != tok {
			return
		}
		n := s.clone()
		n.forced, n.rejected = false, false
		if c.cur.CompareAndSwap(s, n) {
			c.mu.Lock()
			c.rejects = rejectState{} // a token works: the episode is over
			c.mu.Unlock()
			return
		}
	}
}

// forcedRefreshAllowed decides whether the rejection of s, a token issued
// in answer to an earlier rejection, may replace it now. Its first
// rejection never does: it is noted (the state is marked, under c.mu, so
// that concurrent reports of the same 401s count once), the backoff grows
// and EventTokenRejected is emitted. Later rejections count towards the
// next forced refresh.
func (c *core) forcedRefreshAllowed(s *state) bool {
	now := time.Now()
	c.mu.Lock()
	if c.closed || c.cur.Load() != s {
		c.mu.Unlock()
		return false // closed, or changed meanwhile: the caller looks again
	}
	r := &c.rejects
	if !s.rejected {
		n := s.clone()
		n.rejected = true
		c.cur.Store(n) // under c.mu and checked above: nothing else replaced s
		r.streak++
		r.since = 0
		r.next = now.Add(c.backoff(r.streak))
		e := Event{Kind: EventTokenRejected, Time: now, Expiry: s.expiry, Err: errRejectedAgain(r.next.Sub(now))}
		c.active.Add(1) // shutdown waits for this event too
		c.mu.Unlock()
		c.emit(e)
		c.active.Done()
		return false
	}
	r.since++
	if now.Before(r.next) || r.since < 1<<min(r.streak, 30) {
		c.mu.Unlock()
		return false
	}
	r.since = 0
	c.mu.Unlock()
	return true
}

// errRejectedAgain is EventTokenRejected's error.
func errRejectedAgain(wait time.Duration) error {
	return &Error{kind: ErrTokenRejected, msg: "refresh: access token rejected by the resource server: a token issued moments ago, after an earlier rejection, was rejected too, " +
		"so a new one is unlikely to help; the likely cause is an audience or resource mismatch (the token is requested for another resource indicator or scope than the API expects); " +
		"not replacing it for " + wait.Round(time.Millisecond).String() + " at least"}
}
