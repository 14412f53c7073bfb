package refresh

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults of [Options]. See the package comment for the timing model.
const (
	DefaultLifetime          = time.Hour
	DefaultMaxLifetime       = 24 * time.Hour
	DefaultAdvisoryFraction  = 0.80
	DefaultJitter            = 0.25
	DefaultMaxAdvisoryMargin = 5 * time.Minute
	DefaultMandatoryWindow   = 10 * time.Second
	DefaultRefreshTimeout    = 30 * time.Second
	DefaultLockTimeout       = 60 * time.Second
	DefaultRetryBackoffMin   = time.Second
	DefaultRetryBackoffMax   = 30 * time.Second
	DefaultMaxRetryAfter     = 5 * time.Minute
	DefaultRefreshTokenLead  = 24 * time.Hour
)

// Options configures a [Cache]. Every field is optional; the zero value of
// each means the documented default. [New] validates and clamps the values
// once; the Options are copied and never read again. All handles of one
// key share the Options of the [New] call that created the cache (see New
// for what a later New may and may not change).
type Options struct {
	// Persister stores the full token so it survives restarts and is shared
	// with other processes. If it also implements [Locker], refreshes are
	// serialised across processes. Optional: nil keeps tokens in memory only.
	Persister Persister

	// Logger receives structured logs; tokens never reach it. Optional: nil
	// discards logs.
	Logger *slog.Logger

	// OnEvent is called for each [Event] (refreshed, refresh failed,
	// re-authentication required, persist failed, adopted from another
	// process, refresh token expiring). It runs on the goroutine that did the
	// work, before waiting callers are released, so it must be quick.
	// Optional: nil ignores events.
	OnEvent func(Event)

	// DefaultLifetime is assumed for a token whose Expiry is zero and whose
	// access token is not a JWT with an exp claim (a zero Expiry does not
	// mean "never expires"). Optional: zero means 1 h. Clamped to
	// [1 s, MaxLifetime].
	DefaultLifetime time.Duration

	// MaxLifetime caps a token's lifetime (a 2^40 s expires_in becomes this)
	// so every token has a finite refresh schedule. Optional: zero means
	// 24 h. Clamped to [1 s, 1 year].
	//
	// There is no minimum: a token is used for as long as its server says
	// and never longer, however short that is; the schedule scales down
	// with it (see the package comment, "Timing").
	MaxLifetime time.Duration

	// AdvisoryFraction is the point of a token's lifetime at which the cache
	// starts refreshing in the background, before jitter and clamps.
	// Optional: zero means 0.80. Clamped to [0.5, 0.95].
	AdvisoryFraction float64

	// Jitter spreads the advisory point: the early margin
	// (1-AdvisoryFraction)*lifetime is multiplied by a random factor in
	// [1-Jitter, 1+Jitter], so a fleet of processes does not refresh in
	// lockstep (with the defaults: between 75 % and 85 % of the lifetime).
	// Optional: zero means 0.25; negative means no jitter. Clamped to 0.9.
	Jitter float64

	// MaxAdvisoryMargin caps the early margin before jitter, so long-lived
	// tokens refresh minutes, not hours, early. Optional: zero means 5 min.
	// Clamped to at least 1 s.
	MaxAdvisoryMargin time.Duration

	// MandatoryWindow is the span before expiry in which callers wait for a
	// refresh instead of using the old token. For short tokens it shrinks to
	// a tenth of the lifetime, and the early margin is at least twice the
	// window. Optional: zero means 10 s. Clamped to [10 ms, 5 min].
	MandatoryWindow time.Duration

	// RefreshTimeout bounds one refresh once the store lock is held: load,
	// upstream call and save (and a save retry, likewise). Optional: zero
	// means 30 s. Clamped to [100 ms, 10 min].
	RefreshTimeout time.Duration

	// LockTimeout bounds the wait for the [Locker]'s lock, separately from
	// RefreshTimeout: another process may hold the lock for a whole
	// refresh of its own. The Locker's own bound (store.Options'
	// LockTimeout, also 60 s) applies as well. A refresh in the background
	// therefore takes at most LockTimeout + RefreshTimeout. Optional: zero
	// means 60 s. Clamped to [100 ms, 10 min].
	LockTimeout time.Duration

	// RetryBackoffMin and RetryBackoffMax bound the jittered exponential
	// backoff between failed refreshes (and between failed save retries).
	// During backoff a still-valid token keeps being served; an expired one
	// gets the last error at once. Optional: zero means 1 s and 30 s.
	// Clamped to [10 ms, 1 h], and Max to at least Min.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration

	// MaxRetryAfter caps the wait the authorization server may ask for
	// after a failed refresh (a Retry-After, which the Upstream reports
	// through its error's RetryAfterHint method, see [Upstream]): the next
	// attempt comes no earlier than the server's delay cut to
	// MaxRetryAfter, or after the jittered backoff when that is longer.
	// The cap keeps a server, or anyone who can answer in its name, from
	// stopping refreshes for days with a huge Retry-After. During the wait
	// a still-valid token keeps being served; once it has expired, callers
	// get the last error at once instead of waiting. Optional: zero means
	// 5 min; negative ignores the server's delay (backoff only). Clamped to
	// at most 1 h.
	MaxRetryAfter time.Duration

	// RotationGrace is the server's grace period for reusing a rotated
	// refresh token. When a refresh fails in transit (the server may have
	// rotated the token and the answer got lost), the cache reloads the
	// store and, only if the failure happened within RotationGrace of
	// sending, retries once with the same refresh token: outside the
	// server's grace that token may be spent, and presenting it again would
	// revoke the whole token family. Optional: zero means never retry
	// blindly.
	RotationGrace time.Duration

	// RefreshTokenLead is how long before the refresh token's own expiry
	// (refresh_token_expires_in) an EventRefreshTokenExpiring is emitted.
	// Optional: zero means 24 h; negative disables the event.
	RefreshTokenLead time.Duration

	// DisableIdleRefresh turns off the timer that refreshes a token at its
	// advisory point when no caller asks for it. Optional: false keeps an
	// idle process's token fresh.
	DisableIdleRefresh bool

	// TokenTypes lists the token_type values the cache accepts from its
	// Upstream and Set, compared case-insensitively; an empty token_type
	// counts as "Bearer". Any other answer is refused with
	// [ErrUnsupportedTokenType] (a refresh token it rotated is kept all
	// the same). Optional: empty means Bearer only. A DPoP client (RFC
	// 9449) sets "DPoP", and adds "Bearer" only if it accepts a server
	// that falls back to Bearer tokens.
	TokenTypes []string

	// rand returns a float in [0, 1) for jitter; nil uses math/rand/v2.
	rand func() float64
}

// resolve applies defaults and clamps.
func (o Options) resolve() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	o.MaxLifetime = clampDur(defDur(o.MaxLifetime, DefaultMaxLifetime), time.Second, 365*24*time.Hour)
	o.DefaultLifetime = clampDur(defDur(o.DefaultLifetime, DefaultLifetime), time.Second, o.MaxLifetime)
	if o.AdvisoryFraction == 0 || math.IsNaN(o.AdvisoryFraction) {
		o.AdvisoryFraction = DefaultAdvisoryFraction
	}
	o.AdvisoryFraction = min(max(o.AdvisoryFraction, 0.5), 0.95)
	switch {
	case o.Jitter == 0, math.IsNaN(o.Jitter):
		o.Jitter = DefaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	}
	o.Jitter = min(o.Jitter, 0.9)
	o.MaxAdvisoryMargin = max(defDur(o.MaxAdvisoryMargin, DefaultMaxAdvisoryMargin), time.Second)
	o.MandatoryWindow = clampDur(defDur(o.MandatoryWindow, DefaultMandatoryWindow), 10*time.Millisecond, 5*time.Minute)
	o.RefreshTimeout = clampDur(defDur(o.RefreshTimeout, DefaultRefreshTimeout), 100*time.Millisecond, 10*time.Minute)
	o.LockTimeout = clampDur(defDur(o.LockTimeout, DefaultLockTimeout), 100*time.Millisecond, 10*time.Minute)
	o.RetryBackoffMin = clampDur(defDur(o.RetryBackoffMin, DefaultRetryBackoffMin), 10*time.Millisecond, time.Hour)
	o.RetryBackoffMax = clampDur(defDur(o.RetryBackoffMax, DefaultRetryBackoffMax), o.RetryBackoffMin, time.Hour)
	switch {
	case o.MaxRetryAfter == 0:
		o.MaxRetryAfter = DefaultMaxRetryAfter
	case o.MaxRetryAfter < 0:
		o.MaxRetryAfter = 0 // the server's delay is ignored
	}
	o.MaxRetryAfter = min(o.MaxRetryAfter, time.Hour)
	o.RotationGrace = max(o.RotationGrace, 0)
	if o.RefreshTokenLead == 0 {
		o.RefreshTokenLead = DefaultRefreshTokenLead
	}
	return o
}

func defDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func clampDur(v, lo, hi time.Duration) time.Duration { return min(max(v, lo), hi) }

// conflict returns an error matching ErrInvalidConfig, naming the first
// setting that differs, when asked (the resolved options of a later New
// for a key) would configure the cache for that key otherwise than open
// (the options it was created with). Only the settings that can be
// compared count: the durations, fractions and flags, and the Persister
// when its type is comparable. The Logger and OnEvent are every handle's
// own business (the client package passes its own per handle) and the
// first New's serve all of them, as does its Upstream.
func conflict(open, asked Options) error {
	for _, s := range []struct {
		name        string
		open, asked any
	}{
		{"DefaultLifetime", open.DefaultLifetime, asked.DefaultLifetime},
		{"MaxLifetime", open.MaxLifetime, asked.MaxLifetime},
		{"AdvisoryFraction", open.AdvisoryFraction, asked.AdvisoryFraction},
		{"Jitter", open.Jitter, asked.Jitter},
		{"MaxAdvisoryMargin", open.MaxAdvisoryMargin, asked.MaxAdvisoryMargin},
		{"MandatoryWindow", open.MandatoryWindow, asked.MandatoryWindow},
		{"RefreshTimeout", open.RefreshTimeout, asked.RefreshTimeout},
		{"LockTimeout", open.LockTimeout, asked.LockTimeout},
		{"RetryBackoffMin", open.RetryBackoffMin, asked.RetryBackoffMin},
		{"RetryBackoffMax", open.RetryBackoffMax, asked.RetryBackoffMax},
		{"MaxRetryAfter", open.MaxRetryAfter, asked.MaxRetryAfter},
		{"RotationGrace", open.RotationGrace, asked.RotationGrace},
		{"RefreshTokenLead", open.RefreshTokenLead, asked.RefreshTokenLead},
		{"DisableIdleRefresh", open.DisableIdleRefresh, asked.DisableIdleRefresh},
		{"TokenTypes", strings.Join(open.TokenTypes, " "), strings.Join(asked.TokenTypes, " ")},
	} {
		if s.open != s.asked {
			return fmt.Errorf("refresh: %w: the cache for this key is already open with %s %v, and this New asks for %v; "+
				"every handle of a key shares one cache, so pass the same options (or use another key)", ErrInvalidConfig, s.name, s.open, s.asked)
		}
	}
	if !samePersister(open.Persister, asked.Persister) {
		return fmt.Errorf("refresh: %w: the cache for this key is already open with another Persister (%T, this New passes %T); "+
			"every handle of a key shares one cache, which saves to the first Persister only", ErrInvalidConfig, open.Persister, asked.Persister)
	}
	return nil
}

// samePersister reports whether a and b are the same Persister. Values of a
// type that cannot be compared (comparing them panics) are taken as the
// same: there is no telling them apart.
func samePersister(a, b Persister) (same bool) {
	defer func() {
		if recover() != nil {
			same = true
		}
	}()
	return a == b
}
