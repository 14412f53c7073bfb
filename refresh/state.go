package refresh

import (
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// state is one immutable snapshot of the cache's token and its schedule.
// core.cur holds the current one; a change publishes a new snapshot
// (compare-and-swap or store), never edits one. Snapshots that differ only
// in flags share pub, so callers keep seeing the same pointer.
type state struct {
	pub  *oauth2.Token // handed to callers: no refresh token, effective Expiry
	full *token        // with the refresh token; leaves the package only to the Upstream, the Persister and Exchange functions

	fresh       bool      // now < advisoryAt when published (flipped by the timer): Cache.Token's fast path
	advisoryAt  time.Time // from here a background refresh starts
	mandatoryAt time.Time // from here callers wait for a refresh
	expiry      time.Time // effective expiry (== pub.Expiry == full.expiry)
	rawExpiry   time.Time // Expiry as the Upstream or Persister gave it, to detect "no progress"
	rtExpiry    time.Time // refresh token expiry, zero if unknown
	// dead: an access token that arrived already expired (the server, or
	// a clock, is wrong). It is never served; the refresh that brought it
	// counts as failed, so such tokens cannot cause a refresh loop.
	dead bool

	save       saveState // whether full is stored (persist.go)
	invalid    bool      // dropped by Invalidate: do not serve, refresh first
	forced     bool      // replaced a token a resource server rejected (reject.go)
	acceptedBy []string  // origins that accepted this token (reject.go); never modified in place
	rejectedBy []string  // origins whose rejection of this forced token was noted (reject.go)
	reauth     bool      // the grant is dead (invalid_grant): serve the access token while valid, never refresh in the background
}

func (s *state) clone() *state { n := *s; return &n }

// usable reports whether s can be served without waiting. A state without
// an access token (a reduced set that holds only the refresh token) never
// is.
func (s *state) usable(now time.Time) bool {
	return s != nil && !s.invalid && s.full.access != "" && now.Before(s.mandatoryAt)
}

// servable reports whether s may be handed out at all, waiting or not: it
// was not invalidated, has not expired, and, once the grant is dead, has
// not reached its mandatory window. A state that is not servable is never
// returned, backoff or not.
func (s *state) servable(now time.Time) bool {
	return s != nil && !s.invalid && s.full.access != "" && now.Before(s.expiry) && (!s.reauth || now.Before(s.mandatoryAt))
}

// freshAt is what s.fresh should be at now for a state that was just
// saved or changed: only a stored, valid, live token before its advisory
// point may take the fast path (a pending save is retried on the slow
// path's next access).
func (s *state) freshAt(now time.Time) bool {
	return !s.save.pending() && !s.invalid && !s.reauth && now.Before(s.advisoryAt)
}

// LogValue implements slog.LogValuer: schedule and flags, never a secret.
func (s *state) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", s.pub.Type()),
		slog.Time("expiry", s.expiry),
		slog.Time("advisory_at", s.advisoryAt),
		slog.Time("mandatory_at", s.mandatoryAt),
		slog.Bool("has_refresh_token", s.full.refresh != ""),
		slog.String("save", s.save.kind.String()),
		slog.Bool("invalid", s.invalid),
	)
}

// source says where a token passed to newState comes from.
type source int

const (
	fromUpstream source = iota // a new token: one that arrives expired is dead
	fromStore                  // a stored token: may legitimately be expired
)

// newState computes a token's effective expiry and refresh schedule
// (package comment, "Timing"):
//
//   - the expiry is the token's own, else its JWT exp claim, else
//     DefaultLifetime from now, cut to MaxLifetime from now;
//   - the mandatory window W = min(MandatoryWindow, L/10) before expiry,
//     for a lifetime L from now;
//   - the advisory point expiry - m, for an early margin
//     m = clamp((1-AdvisoryFraction)·L, 2W, MaxAdvisoryMargin) times a
//     random factor in [1-Jitter, 1+Jitter], kept within [W, L].
func (c *core) newState(t *token, now time.Time, src source) *state {
	o := &c.o
	exp := t.expiry
	if exp.IsZero() {
		if e, ok := tokenx.JWTExpiry(t.access); ok {
			exp = e
		} else {
			exp = now.Add(o.DefaultLifetime)
		}
	}
	// A token is never used past the expiry its server gave, however
	// short its life: stretching it would only earn 401s. One that
	// arrives expired is dead (see state.dead).
	dead := src == fromUpstream && t.access != "" && !exp.After(now)
	if exp.Sub(now) > o.MaxLifetime {
		exp = now.Add(o.MaxLifetime)
	}
	if t.access == "" && exp.After(now) {
		// A reduced set that carries only the refresh token (reducedSets):
		// expired on arrival, so it is never served and the next Token
		// refreshes with its refresh token.
		exp = now
	}
	exp = exp.Round(0) // no monotonic reading: it is compared with stored values
	full := *t
	full.expiry = exp
	st := &state{pub: full.public(), full: &full, expiry: exp, rawExpiry: t.expiry, rtExpiry: t.rtExpiry(), dead: dead}
	life := exp.Sub(now)
	if life <= 0 {
		st.advisoryAt, st.mandatoryAt = exp, exp
	} else {
		w := min(o.MandatoryWindow, life/10)
		margin := min(max(life-time.Duration(o.AdvisoryFraction*float64(life)), 2*w), o.MaxAdvisoryMargin)
		margin = time.Duration(float64(margin) * (1 + o.Jitter*(2*o.rand()-1)))
		margin = min(max(margin, w), life)
		st.advisoryAt, st.mandatoryAt = exp.Add(-margin), exp.Add(-w)
	}
	st.fresh = now.Before(st.advisoryAt)
	return st
}
