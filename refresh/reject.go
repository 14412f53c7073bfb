package refresh

import (
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// Rejected tokens.
//
// A resource server that answers 401 invalid_token says the token is no
// good; the transport then reports the rejection (Rejected, or Invalidate
// without an origin) and the next Token refreshes. That is right for a
// token that was revoked, or that the server thinks expired earlier than
// we did. But a server that rejects every token (one issued for another
// audience or resource, the usual cause) would turn every request into a
// refresh: a rotation and a store write each.
//
// So a token that was itself issued in answer to a rejection (state.forced:
// it replaced an invalidated token, by a refresh of this process or by
// adopting another process's) and that the rejecting origin never accepted
// is suspected when that origin rejects it in turn: it is not replaced at
// once. EventTokenRejected reports ErrTokenRejected, and the next forced
// refresh for that origin waits for a jittered, exponential backoff (the
// refresh backoff's RetryBackoffMin to RetryBackoffMax) and for twice as
// many rejections from it as the previous one did. Refreshes then grow with
// the logarithm of the rejected requests, never with their number.
//
// The limit is kept per origin, because one token may go to several APIs:
// an API that accepts it says nothing about another that rejects it (the
// other may expect another audience), so acceptance by one origin must not
// let another's rejections drive the token endpoint. The rejection of any
// other token replaces it at once: one from an ordinary refresh or a
// login, and one the rejecting origin had accepted (Accepted, which the
// transport calls for every answer but a 401 or a 5xx: the token worked
// there, and a later rejection means it was revoked). Either also ends
// that origin's limit; a login and Clear end all of them.

// rejectState is the rate limit of refreshes forced by one origin's
// rejections; guarded by core.mu.
type rejectState struct {
	streak int       // forced tokens in a row that this origin rejected too
	since  int       // its rejections since the streak last grew or a forced refresh was let through
	next   time.Time // no refresh forced by it before this
}

// maxRejectOrigins bounds the origins whose limits the cache remembers:
// they are the origins of the transports that use the token, a handful.
// Beyond the bound the oldest is forgotten (a new episode for it).
const maxRejectOrigins = 32

// invalidate implements Cache.Invalidate and Cache.Rejected: origin is the
// origin of the resource server that rejected tok ("" when unknown).
func (c *core) invalidate(origin string, tok *oauth2.Token) bool {
	for {
		s := c.cur.Load()
		if s == nil || s.pub != tok || s.invalid {
			return false
		}
		revoked := slices.Contains(s.acceptedBy, origin) // it worked there before
		if s.forced && !revoked {
			allowed, retry := c.forcedRefreshAllowed(origin, s)
			if retry {
				continue // s changed meanwhile: look again
			}
			if !allowed {
				return false
			}
		}
		n := s.clone()
		n.invalid, n.fresh = true, false
		if c.cur.CompareAndSwap(s, n) {
			c.o.Logger.Debug("refresh: token invalidated", "key", c.key)
			c.mu.Lock()
			if !s.forced || revoked {
				delete(c.rejects, origin) // a new episode for this origin
			}
			c.armLocked(time.Now())
			c.mu.Unlock()
			return true
		}
	}
}

// accepted implements Cache.Accepted. It runs on every answered request
// of the transport: one atomic load and a short scan unless origin accepts
// tok for the first time.
func (c *core) accepted(origin string, tok *oauth2.Token) {
	for {
		s := c.cur.Load()
		if s == nil || s.pub != tok || slices.Contains(s.acceptedBy, origin) {
			return
		}
		n := s.clone()
		n.acceptedBy = append(slices.Clip(s.acceptedBy), origin)
		if c.cur.CompareAndSwap(s, n) {
			c.mu.Lock()
			delete(c.rejects, origin) // the token works there: its episode is over
			c.mu.Unlock()
			return
		}
	}
}

// forcedRefreshAllowed decides whether origin's rejection of s, a token
// issued in answer to an earlier rejection that origin never accepted, may
// replace it now. The first rejection by an origin never does: it is noted
// on the state (by compare-and-swap, so that a token published meanwhile
// is never overwritten, and so that concurrent reports of the same 401s
// count once), the origin's backoff grows and EventTokenRejected is
// emitted. Later rejections count towards the next forced refresh. retry
// is true when s was replaced meanwhile and the caller must look again.
func (c *core) forcedRefreshAllowed(origin string, s *state) (allowed, retry bool) {
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, false
	}
	if c.rejects == nil {
		c.rejects = map[string]*rejectState{}
	}
	r := c.rejects[origin]
	if r == nil {
		if len(c.rejects) >= maxRejectOrigins {
			for k := range c.rejects { // forget one: a new episode for it
				delete(c.rejects, k)
				break
			}
		}
		r = &rejectState{}
		c.rejects[origin] = r
	}
	if !slices.Contains(s.rejectedBy, origin) {
		n := s.clone()
		n.rejectedBy = append(slices.Clip(s.rejectedBy), origin)
		if !c.cur.CompareAndSwap(s, n) {
			c.mu.Unlock()
			return false, true
		}
		r.streak++
		r.since = 0
		r.next = now.Add(c.backoff(r.streak))
		e := Event{Kind: EventTokenRejected, Time: now, Expiry: s.expiry, Err: errRejectedAgain(r.next.Sub(now))}
		c.active.Add(1) // shutdown waits for this event too
		c.mu.Unlock()
		c.emit(e)
		c.active.Done()
		return false, false
	}
	r.since++
	if now.Before(r.next) || r.since < 1<<min(r.streak, 30) {
		c.mu.Unlock()
		return false, false
	}
	r.since = 0
	c.mu.Unlock()
	return true, false
}

// errRejectedAgain is EventTokenRejected's error.
func errRejectedAgain(wait time.Duration) error {
	return &Error{kind: ErrTokenRejected, msg: "refresh: access token rejected by the resource server: a token issued moments ago, after an earlier rejection, was rejected too, " +
		"so a new one is unlikely to help; the likely cause is an audience or resource mismatch (the token is requested for another resource indicator or scope than the API expects); " +
		"not replacing it for " + wait.Round(time.Millisecond).String() + " at least"}
}
