package refresh

import (
	"context"
	"errors"
	"github.com/tokenward/tokenward/internal/httpretry"
	"github.com/tokenward/tokenward/internal/redact"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// state is one immutable snapshot of the cache's token and its schedule.
// A new snapshot replaces it atomically; snapshots that differ only in flags
// share pub, so callers keep seeing the same pointer.
type state struct {
	pub  *oauth2.Token // handed to callers: RefreshToken "", effective Expiry
	full *oauth2.Token // with the refresh token; never leaves the package except to Upstream and Persister

	fresh       bool      // now < advisoryAt when published (flipped by the timer): the fast path
	advisoryAt  time.Time // from here a background refresh starts
	mandatoryAt time.Time // from here callers wait for a refresh
	expiry      time.Time // effective expiry (== pub.Expiry)
	rawExpiry   time.Time // Expiry as the Upstream or Persister gave it, to detect "no progress"
	rtExpiry    time.Time // refresh token expiry, zero if unknown
	// dead: an access token that arrived already expired (the server, or
	// a clock, is wrong). It is never served; the refresh that brought it
	// counts as failed, so such tokens cannot cause a refresh loop.
	dead bool

	unsaved bool // full is newer than the Persister's copy (a Save failed; C-04)
	// partial: the full set could not be saved, but a reduced copy of it
	// (the same refresh token; see reducedSets) is stored. The refresh
	// token is safe and the store is authoritative again; only the full set
	// is retried, and only while the store still holds that refresh token.
	partial bool
	// prev is what the Persister held when full failed to save (nil:
	// nothing), if prevKnown. A save retry that finds the store changed
	// since then does not overwrite it (C-04 without resurrecting a logout).
	prev      *oauth2.Token
	prevKnown bool
	invalid   bool // dropped by Invalidate: do not serve, refresh first
	forced    bool // replaced a token a resource server rejected (reject.go)
	rejected  bool // forced, and rejected in turn: noted once (reject.go)
	reauth    bool // the grant is dead (invalid_grant): serve the access token while valid, never refresh in the background
}

func (s *state) clone() *state { n := *s; return &n }

// usable reports whether s can be served without waiting. A state without
// an access token (a reduced set that holds only the refresh token) never
// is.
func (s *state) usable(now time.Time) bool {
	return s != nil && !s.invalid && s.pub.AccessToken != "" && now.Before(s.mandatoryAt)
}

// pending reports whether a save of s is still to be retried: s is not
// stored at all (unsaved) or only as a reduced copy (partial).
func (s *state) pending() bool { return s.unsaved || s.partial }

// servable reports whether s may be handed out at all, waiting or not: it
// was not invalidated, has not expired, and, once the grant is dead, has
// not reached its mandatory window. A state that is not servable is never
// returned, backoff or not.
func (s *state) servable(now time.Time) bool {
	return s != nil && !s.invalid && s.pub.AccessToken != "" && now.Before(s.expiry) && (!s.reauth || now.Before(s.mandatoryAt))
}

// LogValue implements slog.LogValuer: schedule and flags, never a secret.
func (s *state) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", s.pub.Type()),
		slog.Time("expiry", s.expiry),
		slog.Time("advisory_at", s.advisoryAt),
		slog.Time("mandatory_at", s.mandatoryAt),
		slog.Bool("has_refresh_token", s.full.RefreshToken != ""),
		slog.Bool("unsaved", s.unsaved),
		slog.Bool("partial", s.partial),
		slog.Bool("invalid", s.invalid),
	)
}

type source int

const (
	fromUpstream source = iota // a new token: the lifetime floor applies
	fromStore                  // a stored token: may legitimately be expired
)

// newState computes a token's effective expiry and refresh schedule
// (package comment, "Timing").
func (c *core) newState(t *oauth2.Token, now time.Time, src source) *state {
	o := &c.o
	full := *t // copies the unexported extras too
	exp := t.Expiry
	if exp.IsZero() {
		if e, ok := tokenx.JWTExpiry(t.AccessToken); ok {
			exp = e
		} else {
			exp = now.Add(o.DefaultLifetime)
		}
	}
	// A token is never used past the expiry its server gave, however
	// short its life: stretching it would only earn 401s. One that
	// arrives expired is dead (see state.dead).
	dead := src == fromUpstream && t.AccessToken != "" && !exp.After(now)
	if exp.Sub(now) > o.MaxLifetime {
		exp = now.Add(o.MaxLifetime)
	}
	if t.AccessToken == "" && exp.After(now) {
		// A reduced set that carries only the refresh token (reducedSets):
		// expired on arrival, so it is never served and the next Token
		// refreshes with its refresh token.
		exp = now
	}
	exp = exp.Round(0) // no monotonic reading: it is compared with stored values
	full.Expiry = exp
	pub := full
	pub.RefreshToken = ""
	pubp := pub.WithExtra(publicExtras(&full)) // no refresh token in the extras either (O-02)
	st := &state{pub: pubp, full: &full, expiry: exp, rawExpiry: t.Expiry, rtExpiry: tokenx.RefreshTokenExpiry(t), dead: dead}
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

// secretExtras are token response members that are credentials in their
// own right and so never reach callers through the public token's Extra:
// the refresh token, and OpenID Connect Native SSO's device_secret, which
// can be exchanged for new tokens. The ID token is not a refresh
// credential and stays.
var secretExtras = map[string]bool{"refresh_token": true, "device_secret": true}

var (
	extrasMapType    = reflect.TypeFor[map[string]any]()
	extrasValuesType = reflect.TypeFor[url.Values]()
)

// publicExtras returns the extra fields of t without [secretExtras], for
// the public token, so that provider-specific members such as Salesforce's
// instance_url stay readable. x/oauth2 keeps the raw response (a
// map[string]any for JSON, url.Values for a form body) in an unexported
// field and offers no way to list its keys, so the keys are read by
// reflection and the values through the public Extra method; the result
// has the same shape, so Extra on the public token answers as on the full
// one. If a future x/oauth2 stores extras differently, the public token
// falls back to the non-secret members internal/tokenx knows (id_token,
// scope, ...) and never to a copy that could hold a secret; the tests of
// this function fail on such an upgrade.
func publicExtras(t *oauth2.Token) any {
	rv := reflect.ValueOf(t).Elem().FieldByName("raw")
	if !rv.IsValid() || rv.Kind() != reflect.Interface || rv.IsNil() {
		return fallbackExtras(t)
	}
	e := rv.Elem()
	switch e.Type() {
	case extrasMapType:
		out := make(map[string]any, e.Len())
		for it := e.MapRange(); it.Next(); {
			if k := it.Key().String(); !secretExtras[k] {
				out[k] = t.Extra(k)
			}
		}
		return out
	case extrasValuesType:
		out := make(url.Values, e.Len())
		for it := e.MapRange(); it.Next(); {
			k, vs := it.Key().String(), it.Value()
			if secretExtras[k] {
				continue
			}
			for i := range vs.Len() {
				out[k] = append(out[k], vs.Index(i).String())
			}
		}
		return out
	}
	return fallbackExtras(t)
}

// fallbackExtras is the allowlist publicExtras uses when it cannot list
// the extras.
func fallbackExtras(t *oauth2.Token) any {
	m := tokenx.Extras(t, "issued_token_type")
	if len(m) == 0 {
		return nil
	}
	return m
}

type opKind int

const (
	opRefresh  opKind = iota // lock, load/adopt, call Upstream, save, publish
	opPersist                // retry saving an unsaved (or partial) token
	opSet                    // publish a token handed to Set
	opClear                  // forget the token: delete it from the Persister and memory
	opExchange               // run an Exchange function with the full token
)

// flight is the one operation in progress for a key. Its fields are written
// before done is closed and read only after.
type flight struct {
	op         opKind
	background bool
	done       chan struct{}
	err        error
	waiters    atomic.Int32 // callers that waited for this refresh (joined it on Token's slow path)
	noProgress bool         // the Upstream returned the token we already had
	published  bool         // opExchange: a new token was published
	deadGrant  bool         // opExchange: the grant was found dead (moved to re-authentication)
}

// core is the shared cache of one key.
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
	failures    int         // consecutive failed (or no-progress, or dead-on-arrival) refreshes
	nextAttempt time.Time   // no new refresh before this (backoff)
	lastErr     error       // error of the last failed refresh, returned during backoff
	saveFails   int         // consecutive failed save retries (0: the next access retries at once)
	nextSave    time.Time   // no save retry before this (the timer waits for it)
	suspectRT   string      // refresh token presented when a refresh failed in transit (C-03)
	rejects     rejectState // rate limit of refreshes forced by rejected tokens
	rtWarned    string      // refresh token for which EventRefreshTokenExpiring was emitted

	// After a Clear that could not delete the stored token: that token
	// (cleared), or, when it is unknown, any stored token (clearedAny), is
	// never loaded or adopted; the delete is retried under the lock before
	// the next refresh. Reset by a successful delete or save, and by Set.
	cleared    *oauth2.Token
	clearedAny bool
}

func newCore(key string, up Upstream, o Options) *core {
	c := &core{key: key, up: up, o: o, gone: make(chan struct{})}
	if l, ok := o.Persister.(Locker); ok {
		c.locker = l
	}
	return c
}

// token is Token's slow path.
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
			case s.pending() && c.fl == nil && (c.saveFails == 0 || !now.Before(c.nextSave)):
				// C-04: retry the save on this access, in the background:
				// the token is valid, so nobody waits for the store.
				c.startLocked(ctx, opPersist, true)
			case c.wantRefreshLocked(s, now):
				c.startLocked(ctx, opRefresh, true)
			case s.fresh != now.Before(s.advisoryAt) && !s.pending() && !s.invalid:
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
			continue
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

// startLocked starts op on its own goroutine. The in-flight flag is set
// before the goroutine starts, so no second caller can start another (the
// window google-cloud-go's isRefreshRunning leaves open). The operation runs
// under context.WithoutCancel(ctx) with a deadline (see run): no single
// caller can cancel it, and it keeps ctx's values.
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

// run performs f and does the bookkeeping shared by all operations. The
// whole operation is bounded by LockTimeout (waiting for the store lock)
// plus RefreshTimeout (the work); each part is bounded on its own too.
func (c *core) run(parent context.Context, f *flight) {
	budget := c.o.RefreshTimeout
	if c.locker != nil {
		budget += c.o.LockTimeout
	}
	ctx, cancel := context.WithTimeout(parent, budget)
	defer cancel()
	start := time.Now()
	var evs []Event
	switch f.op {
	case opRefresh:
		f.err = c.refresh(ctx, f, &evs)
	case opPersist:
		c.persist(ctx, f, &evs)
	}
	c.finish(f, start, evs)
}

// finish records f's outcome, re-arms the timer, emits events and releases
// the waiters.
func (c *core) finish(f *flight, start time.Time, evs []Event) {
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
			next := now.Add(c.backoff(c.failures))
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
			e := Event{Kind: k, Time: now, Duration: now.Sub(start), Background: f.background, Err: f.err}
			if s != nil {
				e.Expiry = s.expiry
			}
			evs = append(evs, e)
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
			e := Event{Kind: EventReauthRequired, Time: now, Duration: now.Sub(start), Err: f.err}
			if s := c.cur.Load(); s != nil {
				e.Expiry = s.expiry
			}
			evs = append(evs, e)
		case f.published:
			c.failures, c.lastErr, c.nextAttempt = 0, nil, time.Time{}
		}
	}
	if f.op == opRefresh {
		// Nobody can join f any more (c.fl is nil): the count is final.
		n := int(f.waiters.Load())
		for i := range evs {
			switch evs[i].Kind {
			case EventRefreshed, EventRefreshFailed, EventAdopted, EventReauthRequired:
				evs[i].Waiters = n
			}
		}
	}
	if e, ok := c.rtWarningLocked(now); ok {
		evs = append(evs, e)
	}
	c.armLocked(now)
	c.mu.Unlock()
	for _, e := range evs {
		c.emit(e)
	}
	close(f.done)
	c.active.Done()
}

// backoff returns the jittered exponential delay after n failures: a
// random value in [d/2, d] with d = RetryBackoffMin * 2^(n-1), capped.
func (c *core) backoff(n int) time.Duration {
	d := c.o.RetryBackoffMin
	for i := 1; i < n && d < c.o.RetryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.o.RetryBackoffMax)
	return d/2 + time.Duration(c.o.rand()*float64(d/2))
}

// lockKey takes the cross-process lock for c.key, if the Persister is a
// Locker. The wait is bounded by LockTimeout (and ctx), not by
// RefreshTimeout. The returned unlock also releases the wait's context, in
// case the Locker ties the lock to it.
func (c *core) lockKey(ctx context.Context) (unlock func(), err error) {
	if c.locker == nil {
		return func() {}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, c.o.LockTimeout)
	u, err := c.locker.Lock(lctx, c.key)
	if err != nil {
		cancel()
		return nil, c.wrap("taking the store lock", err)
	}
	return func() {
		if uerr := u(); uerr != nil {
			c.o.Logger.Warn("refresh: releasing the store lock failed", "key", c.key, "error", redact.Scrub(uerr.Error(), maxErrorLen))
		}
		cancel()
	}, nil
}

// refresh is one refresh under the cross-process protocol (package comment).
func (c *core) refresh(ctx context.Context, f *flight, evs *[]Event) (err error) {
	start := time.Now()
	p := c.o.Persister
	s := c.cur.Load()
	var cur *oauth2.Token
	if s != nil {
		cur = s.full
	}
	if s == nil && p != nil {
		// Startup: the store first, without the lock (cheap, and a fresh
		// stored token needs no lock).
		lctx, cancel := context.WithTimeout(ctx, c.o.RefreshTimeout)
		stored, err := c.load(lctx)
		cancel()
		if err != nil {
			return err
		}
		if stored != nil {
			ns := c.newState(stored, time.Now(), fromStore)
			if ns.usable(time.Now()) {
				c.publish(ns)
				c.o.Logger.Debug("refresh: loaded token from the store", "key", c.key, "token", ns)
				return nil
			}
			cur = ns.full
		}
	}
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, c.o.RefreshTimeout)
	defer cancel()

	b, err := c.freshest(ctx, s, cur, start, f.background, evs)
	if err != nil || b.adopted {
		return err
	}
	s, cur = b.s, b.cur
	tok, rotated, err := c.callUpstream(ctx, f, cur, b.unsaved, start, evs)
	if rotated != nil {
		c.keepRotated(ctx, cur, rotated, b.prev, b.prevKnown, f.background, evs,
			"refresh: the authorization server's answer was refused but carried a new refresh token; keeping that refresh token")
	}
	if err != nil || tok == nil {
		return err
	}
	now := time.Now()
	if cur != nil && tok.AccessToken == cur.AccessToken && tok.RefreshToken == cur.RefreshToken && s != nil && tok.Expiry.Equal(s.rawExpiry) {
		// The same token again: back off instead of looping.
		f.noProgress = true
		c.o.Logger.Debug("refresh: upstream returned the current token; backing off", "key", c.key)
		return nil
	}
	ns := c.newState(tok, now, fromUpstream)
	if p != nil {
		if perr := c.persistNew(ctx, ns, b.prev, b.prevKnown, secretsOf(ns.full, cur)); perr != nil {
			*evs = append(*evs, Event{Kind: EventPersistFailed, Time: now, Expiry: ns.expiry, Background: f.background, Err: perr})
		}
	}
	c.publish(ns)
	if ns.dead {
		// Saved and published all the same: its refresh token may be a
		// rotated one, the only live one there is.
		return errDeadOnArrival
	}
	*evs = append(*evs, Event{Kind: EventRefreshed, Time: now, Duration: time.Since(start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry, Background: f.background})
	return nil
}

// errDeadOnArrival is a refresh's error when the new access token had
// already expired when it arrived.
var errDeadOnArrival = &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: it issued an access token that had already expired (is its clock, or this machine's, wrong?)"}

// basis is what a refresh or an exchange presents, found under the store
// lock by freshest.
type basis struct {
	s         *state        // the state in memory (its saved twin after a save retry)
	cur       *oauth2.Token // the freshest full token known; nil if none
	prev      *oauth2.Token // what the Persister holds, for a new token whose save fails
	prevKnown bool
	unsaved   bool // cur is newer than the stored token: never read the store over it
	adopted   bool // cur is a fresh token another process stored, now published
}

// errRemoved is the error when another process removed the stored token.
func errRemoved() error {
	return &Error{kind: ErrReauthRequired, msg: "refresh: re-authentication required: the stored token was removed"}
}

// freshest finds, under the store lock, the freshest full token: the one in
// memory when it is newer than the store's (a save failed; the save is
// retried first), else the stored one when another process replaced ours,
// adopting it when it is fresh (package comment, "Cross-process protocol").
// s is the state in memory and cur the token to present without a store
// (s.full, or at startup the token read before the lock).
//
// It fails rather than present a refresh token that may be stale: when the
// store cannot be read under the lock, another process may have rotated
// the refresh token in memory already, and presenting it again is a reuse
// that revokes the whole token family.
func (c *core) freshest(ctx context.Context, s *state, cur *oauth2.Token, start time.Time, background bool, evs *[]Event) (b basis, err error) {
	b.s, b.cur = s, cur
	if c.o.Persister == nil {
		return b, nil
	}
	c.retryClear(ctx)
	if s != nil && s.unsaved {
		// Our token is newer than the stored one (a save failed): save it
		// now; never read the older stored token over it (C-04).
		r, stored, serr := c.resave(ctx, s)
		switch r {
		case resaved:
			if b.s = c.markSaved(s); b.s == nil {
				return b, &Error{msg: "refresh: no token"} // cleared meanwhile (cannot happen: Clear waits for us)
			}
			b.cur, b.prev, b.prevKnown = b.s.full, b.s.full, true
			*evs = append(*evs, c.persistedEvent(b.s, start, background))
		case resavePartial:
			// The refresh token is stored now (in a reduced set): the
			// store holds our refresh token again.
			if b.s = c.markPartial(s); b.s == nil {
				return b, &Error{msg: "refresh: no token"}
			}
			b.cur, b.prev, b.prevKnown = b.s.full, stored, true
		case resaveFailed:
			c.o.Logger.Debug("refresh: save retry failed", "key", c.key, "error", c.wrap("saving", serr))
			b.unsaved, b.prev, b.prevKnown = true, s.prev, s.prevKnown
		case resaveGone:
			c.toReauth(s)
			return b, errRemoved()
		}
		return b, nil
	}
	stored, lerr := c.load(ctx)
	switch {
	case lerr != nil:
		// Another process may have rotated the refresh token we hold and
		// stored its successor: do not present ours. This attempt fails
		// (a valid token is still served) and is retried with backoff.
		c.o.Logger.Warn("refresh: reloading the store under the lock failed; not refreshing with a refresh token another process may have rotated", "key", c.key, "error", lerr)
		return b, lerr
	case stored == nil:
		b.prevKnown = true
		if s != nil && !s.reauth {
			// Removed by another process (logout, or it saw
			// invalid_grant): do not resurrect it.
			c.toReauth(s)
			return b, errRemoved()
		}
		if s == nil {
			b.cur = nil
		}
	case cur != nil && stored.AccessToken == "" && stored.RefreshToken != "" && stored.RefreshToken == cur.RefreshToken:
		// The reduced copy of our own token (its full set could not be
		// saved): same refresh token; keep the fuller one in memory.
		b.prev, b.prevKnown = stored, true
	case !sameToken(stored, cur):
		b.prev, b.prevKnown = stored, true
		now := time.Now()
		ns := c.newState(stored, now, fromStore)
		b.cur = ns.full // the freshest refresh token we know
		if ns.fresh || (s == nil && ns.usable(now)) {
			c.publish(ns)
			b.s, b.adopted = ns, true
			*evs = append(*evs, Event{Kind: EventAdopted, Time: now, Duration: now.Sub(start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry, Background: background})
		}
	default:
		b.prev, b.prevKnown = stored, true
	}
	return b, nil
}

// callUpstream asks the Upstream for a new token and validates it. It
// returns (nil, nil, nil) when it adopted a stored token instead. When the
// cache refuses the answer but it carries a new refresh token, rotated is
// cur with that refresh token (see keepRotated). unsaved says that cur is
// newer than the stored token.
func (c *core) callUpstream(ctx context.Context, f *flight, cur *oauth2.Token, unsaved bool, start time.Time, evs *[]Event) (tok, rotated *oauth2.Token, err error) {
	p := c.o.Persister
	retried := false
	for attempt := 0; attempt < 2; attempt++ {
		var arg *oauth2.Token
		if cur != nil {
			cp := *cur // the Upstream must not modify our copy
			arg = &cp
		}
		sent := time.Now()
		tok, err := c.up.Token(ctx, arg)
		if err == nil {
			v, verr := c.validate(tok, cur)
			if verr != nil {
				return nil, rotatedRT(tok, cur), verr
			}
			return v, nil, nil
		}
		secrets := secretsOf(cur)
		cerr := classify(err, secrets...)
		rt := ""
		if cur != nil {
			rt = cur.RefreshToken
		}
		if errors.Is(cerr, ErrNetwork) && rt != "" && !httpretry.NotSent(err) {
			// C-03: the server may have rotated the refresh token and the
			// answer got lost. First reload the store: another process may
			// have refreshed meanwhile, and its fresh token is adopted.
			// Nothing else is taken from the store here: a stored token
			// that is not fresh may be older than cur, its refresh token
			// already spent, and a token newer than the store's (unsaved)
			// skips the reload altogether. Then retry blindly at most once,
			// within the grace.
			if p != nil && !unsaved {
				if stored, lerr := c.load(ctx); lerr == nil && stored != nil && !sameToken(stored, cur) {
					now := time.Now()
					if ns := c.newState(stored, now, fromStore); ns.fresh {
						c.publish(ns)
						*evs = append(*evs, Event{Kind: EventAdopted, Time: now, Duration: now.Sub(start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry, Background: f.background})
						return nil, nil, nil
					}
				}
			}
			if !retried && c.o.RotationGrace > 0 && time.Since(sent) < c.o.RotationGrace && ctx.Err() == nil {
				retried = true
				c.o.Logger.Debug("refresh: retrying once within the rotation grace", "key", c.key)
				continue
			}
			c.mu.Lock()
			c.suspectRT = rt
			c.mu.Unlock()
			return nil, nil, cerr
		}
		if errors.Is(cerr, ErrReauthRequired) {
			cerr = c.markRotationLoss(cerr, rt, secrets)
			c.reauth(ctx, cur)
		}
		return nil, nil, cerr
	}
	return nil, nil, &Error{kind: ErrNetwork, msg: "refresh: token refresh failed in transit repeatedly"}
}

// markRotationLoss marks cerr, an ErrReauthRequired for refresh token rt,
// as ErrPossibleRotationLoss when an earlier attempt with rt failed in
// transit (C-03).
func (c *core) markRotationLoss(cerr error, rt string, secrets []string) error {
	c.mu.Lock()
	suspect := rt != "" && c.suspectRT == rt
	c.mu.Unlock()
	var e *Error
	if suspect && errors.As(cerr, &e) {
		ne := *e // never modify an error the Upstream may share
		ne.rotationLoss = true
		ne.msg = ne.build(secrets)
		return &ne
	}
	return cerr
}

// validate checks an Upstream token (O-11) and carries the refresh token
// over when the response had none (RFC 6749 section 6).
func (c *core) validate(tok, cur *oauth2.Token) (*oauth2.Token, error) {
	if tok == nil || tok.AccessToken == "" {
		return nil, &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: the upstream returned no access token"}
	}
	if tt := tok.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") {
		e := &Error{kind: ErrUnsupportedTokenType, Description: "token_type " + redact.Scrub(tt, 32, secretsOf(tok, cur)...)}
		e.msg = e.build(secretsOf(tok, cur))
		return nil, e
	}
	if tok.RefreshToken == "" && cur != nil && cur.RefreshToken != "" {
		n := *tok
		n.RefreshToken = cur.RefreshToken
		if tokenx.RefreshTokenExpiry(tok).IsZero() {
			if rte := tokenx.RefreshTokenExpiry(cur); !rte.IsZero() {
				extra := tokenx.Extras(tok)
				extra[tokenx.KeyRefreshTokenExpiry] = rte
				n = *n.WithExtra(extra)
			}
		}
		tok = &n
	}
	return tok, nil
}

// rotatedRT handles an answer the cache refuses (no access token, or a
// token_type it cannot send) that carries a new refresh token: the server
// may have rotated, so the refresh token just presented may be spent (O-07).
// It returns cur with the new refresh token (and that token's expiry, if
// sent): the access token in use and its expiry are kept. It returns nil
// when there is nothing to keep.
func rotatedRT(tok, cur *oauth2.Token) *oauth2.Token {
	if tok == nil || tok.RefreshToken == "" || cur == nil || cur.RefreshToken == "" || tok.RefreshToken == cur.RefreshToken {
		return nil
	}
	extra := tokenx.Extras(cur)
	delete(extra, "refresh_token_expires_in") // the old refresh token's
	delete(extra, tokenx.KeyRefreshTokenExpiry)
	if rte := tokenx.RefreshTokenExpiry(tok); !rte.IsZero() {
		extra[tokenx.KeyRefreshTokenExpiry] = rte
	}
	n := *cur
	n.RefreshToken = tok.RefreshToken
	return n.WithExtra(extra)
}

// keepRotated saves and publishes rotated, the token in use with a new
// refresh token (rotatedRT): from an answer the cache refused, or from an
// Exchange that brought no new access token for this cache. The next
// attempt presents the new refresh token, never the spent one; the access
// token served is unchanged. If the save fails the token is kept unsaved
// (or partial), as after any failed save (C-04), and the returned error
// matches ErrPersistFailed. why is logged at warning level, if not "".
func (c *core) keepRotated(ctx context.Context, cur, rotated, prev *oauth2.Token, prevKnown, background bool, evs *[]Event, why string) error {
	now := time.Now()
	var stored *oauth2.Token
	var serr error
	if c.o.Persister != nil {
		stored, serr = c.saveChain(ctx, rotated)
	}
	var ns *state
	for {
		s := c.cur.Load()
		if s != nil && s.full == cur {
			// Our token: same access token, same schedule, same public
			// token (and still invalid, if it was invalidated).
			ns = s.clone()
			full := *rotated
			ns.full, ns.rtExpiry = &full, tokenx.RefreshTokenExpiry(rotated)
		} else {
			// cur came from the store (newer than memory).
			ns = c.newState(rotated, now, fromStore)
		}
		ns.unsaved, ns.partial, ns.prev, ns.prevKnown = false, false, nil, false
		switch {
		case serr != nil && stored != nil:
			ns.partial = true
		case serr != nil:
			ns.unsaved, ns.prev, ns.prevKnown = true, prev, prevKnown
		}
		ns.fresh = !ns.pending() && !ns.invalid && !ns.reauth && now.Before(ns.advisoryAt)
		if c.cur.CompareAndSwap(s, ns) {
			break
		}
	}
	if why != "" {
		c.o.Logger.Warn(why, "key", c.key)
	}
	if serr == nil {
		return nil
	}
	c.saveFailedFirst(time.Now())
	perr := c.persistError(serr, stored != nil, secretsOf(rotated, cur))
	*evs = append(*evs, Event{Kind: EventPersistFailed, Time: now, Expiry: ns.expiry, Background: background, Err: perr})
	return perr
}

// persistError is the ErrPersistFailed error reported (once) for a new
// token whose full set could not be saved; reduced says that a reduced set
// holding its refresh token was saved instead.
func (c *core) persistError(serr error, reduced bool, secrets []string) error {
	perr := &Error{kind: ErrPersistFailed, Err: serr}
	perr.msg = perr.build(secrets)
	if reduced {
		c.o.Logger.Warn("refresh: the full token set could not be saved; a reduced set holding the refresh token was saved instead, the full set is retried", "key", c.key)
	}
	return perr
}

// persistNew saves ns.full, a new token, under the store lock (saveChain)
// before it is published. When the full set cannot be saved, ns is marked
// partial (a reduced set holding its refresh token is stored) or unsaved
// (nothing is; prev is what the store still holds, read now if unknown),
// the save is scheduled for retry, and the ErrPersistFailed error to
// report is returned.
func (c *core) persistNew(ctx context.Context, ns *state, prev *oauth2.Token, prevKnown bool, secrets []string) error {
	stored, serr := c.saveChain(ctx, ns.full)
	if serr == nil {
		return nil
	}
	ns.fresh = false
	if stored != nil {
		ns.partial = true
	} else {
		if !prevKnown {
			// What the store still holds, so that a save retry does not
			// undo a later logout in another process.
			var lerr error
			prev, lerr = c.load(ctx)
			prevKnown = lerr == nil
		}
		ns.unsaved, ns.prev, ns.prevKnown = true, prev, prevKnown
	}
	c.saveFailedFirst(time.Now()) // after the save, which may have hung for long
	return c.persistError(serr, stored != nil, secrets)
}

// reducedExpiry is the Expiry of a reduced set without an access token: long
// past, so that no reader serves its empty access token.
var reducedExpiry = time.Unix(0, 0).UTC()

// reducedSets returns the smaller token sets saveChain falls back to when
// the full set of t cannot be saved (a keychain entry size limit, an ID
// token or access token too large for store.MaxEntrySize, or a transient
// failure): first t without its extra fields (id_token, scope, ...; the
// refresh token's expiry is kept), then the refresh token alone (with its
// expiry), with no access token and an Expiry long past (reducedExpiry), so
// that whoever loads it refreshes with its refresh token at once. A set
// equal to t, or without a refresh token to keep, is left out.
func reducedSets(t *oauth2.Token) []*oauth2.Token {
	var extra map[string]any
	if rte := tokenx.RefreshTokenExpiry(t); !rte.IsZero() {
		extra = map[string]any{tokenx.KeyRefreshTokenExpiry: rte}
	}
	withRTE := func(n *oauth2.Token) *oauth2.Token {
		if extra == nil {
			return n
		}
		return n.WithExtra(extra)
	}
	var out []*oauth2.Token
	if hasExtras(t) {
		out = append(out, withRTE(&oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, Expiry: t.Expiry}))
	}
	if t.RefreshToken != "" && t.AccessToken != "" {
		out = append(out, withRTE(&oauth2.Token{RefreshToken: t.RefreshToken, Expiry: reducedExpiry}))
	}
	return out
}

// hasExtras reports whether t carries extra fields a Persister may store
// besides the refresh token's expiry.
func hasExtras(t *oauth2.Token) bool {
	m := tokenx.Extras(t, "issued_token_type", "device_secret")
	delete(m, tokenx.KeyRefreshTokenExpiry)
	delete(m, "refresh_token_expires_in")
	return len(m) > 0
}

// saveChain saves tok, a new token whose predecessor's refresh token may be
// spent, under the store lock. If the full set cannot be saved it saves the
// reduced sets of reducedSets, one after the other, so that the store
// never keeps a refresh token the server consumed while a smaller set
// could hold the new one: another process that refreshes next presents
// the new refresh token, not the spent one. It returns what the store now
// holds of tok (tok, a reduced set, or nil) and the full save's error.
func (c *core) saveChain(ctx context.Context, tok *oauth2.Token) (stored *oauth2.Token, err error) {
	if err = c.save(ctx, tok); err == nil {
		return tok, nil
	}
	for _, r := range reducedSets(tok) {
		if ctx.Err() != nil {
			break
		}
		rerr := c.save(ctx, r)
		if rerr == nil {
			return r, err
		}
		c.o.Logger.Debug("refresh: saving a reduced token set failed too", "key", c.key,
			"error", redact.Scrub("refresh: saving: "+rerr.Error(), maxErrorLen, secretsOf(tok, c.fullNow())...))
	}
	return nil, err
}

// reauth deletes the dead token from the store (only if the store still
// holds it) and stops background refreshes.
func (c *core) reauth(ctx context.Context, dead *oauth2.Token) {
	if p := c.o.Persister; p != nil {
		stored, err := c.load(ctx)
		if err == nil && stored != nil && (dead == nil || sameToken(stored, dead) || sameRefreshToken(stored, dead)) {
			if derr := p.Delete(ctx, c.key); derr != nil {
				c.o.Logger.Warn("refresh: deleting the dead token failed", "key", c.key, "error", c.wrap("deleting", derr))
			}
		}
	}
	if s := c.cur.Load(); s != nil {
		c.toReauth(s)
	}
}

// toReauth publishes s without its refresh token, marked dead. Its access
// token is still served until the mandatory window.
func (c *core) toReauth(s *state) {
	n := s.clone()
	full := *n.full
	full.RefreshToken = ""
	n.full, n.reauth, n.unsaved, n.partial, n.fresh = &full, true, false, false, false
	c.cur.Store(n)
}

type resaveResult int

const (
	resaveFailed     resaveResult = iota // the save failed again
	resaved                              // the token is stored now
	resaveGone                           // the entry was deleted elsewhere since the save failed
	resavePartial                        // only a reduced set (the refresh token) is stored
	resaveSuperseded                     // partial: another process replaced the entry; nothing to save
)

// resave retries saving s.full, the newer token a Save failed to store
// (C-04), falling back to reduced sets as saveChain does. It reads the
// store first: if the entry that was there when the save failed has been
// deleted since (a logout or a dead grant in another process), the token
// is not resurrected. Any other stored token is overwritten: it may be an
// earlier save of this process that completed late (a hung keychain call),
// whose refresh token is spent, so it is never adopted here. When the store
// cannot be read the token is saved anyway: losing a rotated refresh token
// is worse. It also returns what the store holds of s.full afterwards.
func (c *core) resave(ctx context.Context, s *state) (resaveResult, *oauth2.Token, error) {
	stored, lerr := c.load(ctx)
	switch {
	case lerr != nil:
	case stored != nil && sameToken(stored, s.full):
		return resaved, stored, nil // stored after all (the read-back had failed)
	case stored == nil && s.prevKnown && s.prev != nil:
		return resaveGone, nil, nil
	}
	red, err := c.saveChain(ctx, s.full)
	switch {
	case err == nil:
		return resaved, red, nil
	case red != nil:
		return resavePartial, red, err
	}
	return resaveFailed, nil, err
}

// resaveFull retries saving the full set of s, a partial state (a reduced
// set holding its refresh token is stored), but only while the store still
// holds that refresh token: any other stored token was put there by
// another process, which may have refreshed with ours (it is spent then),
// and the store is authoritative again.
func (c *core) resaveFull(ctx context.Context, s *state) (resaveResult, error) {
	stored, lerr := c.load(ctx)
	switch {
	case lerr != nil:
		return resaveFailed, lerr
	case stored == nil:
		return resaveGone, nil
	case stored.RefreshToken != s.full.RefreshToken:
		return resaveSuperseded, nil
	}
	if err := c.save(ctx, s.full); err != nil {
		return resaveFailed, err
	}
	return resaved, nil
}

// persist retries saving an unsaved or partial token (opPersist), in the
// background: callers keep using the token meanwhile.
func (c *core) persist(ctx context.Context, f *flight, evs *[]Event) {
	s := c.cur.Load()
	if s == nil || !s.pending() || c.o.Persister == nil {
		return
	}
	start := time.Now()
	unlock, err := c.lockKey(ctx)
	if err != nil {
		c.saveFailed(err)
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, c.o.RefreshTimeout)
	defer cancel()
	c.retrySave(ctx, s, start, f.background, evs)
}

// retrySave retries the save of s, a pending state, under the store lock,
// and records the outcome.
func (c *core) retrySave(ctx context.Context, s *state, start time.Time, background bool, evs *[]Event) {
	var r resaveResult
	var err error
	if s.unsaved {
		r, _, err = c.resave(ctx, s)
	} else {
		r, err = c.resaveFull(ctx, s)
	}
	now := time.Now()
	switch r {
	case resaveFailed:
		c.saveFailed(err)
		return
	case resavePartial:
		// The refresh token is safe now; the full set is retried later.
		c.markPartial(s)
		c.saveFailed(err)
		c.o.Logger.Info("refresh: refresh token saved in a reduced token set after an earlier failure", "key", c.key)
		return
	case resaved:
		s = c.markSaved(s)
		*evs = append(*evs, c.persistedEvent(s, start, background))
		c.o.Logger.Info("refresh: token saved after an earlier failure", "key", c.key)
	case resaveSuperseded:
		// Another process stored a newer token (it may have refreshed
		// with our refresh token): the next refresh adopts it.
		c.markSaved(s)
		c.o.Logger.Debug("refresh: the stored token was replaced by another process; not saving ours over it", "key", c.key)
	case resaveGone:
		// Logged out (or the grant died) in another process: do not
		// undo it. The access token is served until its mandatory window.
		if cur := c.cur.Load(); cur != nil && cur.full == s.full {
			c.toReauth(cur) // keeps an Invalidate that came meanwhile
		}
		*evs = append(*evs, Event{Kind: EventReauthRequired, Time: now, Duration: now.Sub(start), Expiry: s.expiry, Background: background, Err: errRemoved()})
	}
	c.mu.Lock()
	c.saveFails, c.nextSave = 0, time.Time{}
	c.mu.Unlock()
}

// persistedEvent reports that s, whose save had failed, is stored now.
func (c *core) persistedEvent(s *state, start time.Time, background bool) Event {
	now := time.Now()
	e := Event{Kind: EventPersisted, Time: now, Duration: now.Sub(start), Background: background}
	if s != nil {
		e.Expiry, e.RefreshTokenExpiry = s.expiry, s.rtExpiry
	}
	return e
}

// saveFailedFirst records the first failed save of a new token: the next
// access retries at once, the idle timer after a backoff.
func (c *core) saveFailedFirst(now time.Time) {
	c.mu.Lock()
	c.saveFails = 0
	c.nextSave = now.Add(c.backoff(1))
	c.mu.Unlock()
}

func (c *core) saveFailed(err error) {
	c.mu.Lock()
	c.saveFails++
	c.nextSave = time.Now().Add(c.backoff(c.saveFails))
	c.mu.Unlock()
	// Reported once (EventPersistFailed) when the token arrived; retries
	// only log at debug level.
	c.o.Logger.Debug("refresh: save retry failed", "key", c.key, "error", c.wrap("saving", err))
}

// markSaved replaces s (or its invalidated twin) by a saved copy.
func (c *core) markSaved(s *state) *state {
	for {
		cur := c.cur.Load()
		if cur == nil || cur.full != s.full {
			return cur
		}
		n := cur.clone()
		n.unsaved, n.partial, n.prev, n.prevKnown = false, false, nil, false
		n.fresh = !n.invalid && !n.reauth && time.Now().Before(n.advisoryAt)
		if c.cur.CompareAndSwap(cur, n) {
			return n
		}
	}
}

// markPartial replaces s (or its invalidated twin) by a copy whose refresh
// token is stored in a reduced set: no longer unsaved, the full set still
// to be retried.
func (c *core) markPartial(s *state) *state {
	for {
		cur := c.cur.Load()
		if cur == nil || cur.full != s.full {
			return cur
		}
		n := cur.clone()
		n.unsaved, n.partial, n.prev, n.prevKnown, n.fresh = false, true, nil, false, false
		if c.cur.CompareAndSwap(cur, n) {
			return n
		}
	}
}

// set implements Cache.Set.
func (c *core) set(ctx context.Context, tok *oauth2.Token) error {
	if tok == nil || tok.AccessToken == "" {
		return errors.New("refresh: Set: token without an access token")
	}
	tok, err := c.validate(tok, nil)
	if err != nil {
		return err
	}
	f, err := c.acquire(ctx, opSet)
	if err != nil {
		return err
	}
	start := time.Now()
	var evs []Event
	f.err = c.doSet(ctx, tok, &evs)
	var ret error
	if errors.Is(f.err, ErrPersistFailed) {
		ret, f.err = f.err, nil // published anyway
	}
	c.finish(f, start, evs)
	if f.err != nil {
		return f.err
	}
	return ret
}

func (c *core) doSet(ctx context.Context, tok *oauth2.Token, evs *[]Event) error {
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	c.mu.Lock()
	c.cleared, c.clearedAny = nil, false // a new login: the store's token counts again
	c.mu.Unlock()
	now := time.Now()
	ns := c.newState(tok, now, fromUpstream)
	ns.dead = false // a login's token is no refresh: nothing to back off from
	var perr error
	if c.o.Persister != nil {
		if perr = c.persistNew(ctx, ns, nil, false, secretsOf(ns.full)); perr != nil {
			*evs = append(*evs, Event{Kind: EventPersistFailed, Time: now, Expiry: ns.expiry, Err: perr})
		}
	}
	c.mu.Lock()
	c.rtWarned = ""
	c.rejects = rejectState{} // a new login: nothing was rejected yet
	c.mu.Unlock()
	c.cur.Store(ns) // not publish: a login's token is never forced
	return perr
}

// clear implements Cache.Clear: it waits for any operation in flight, then,
// under the store lock, deletes the stored token and drops the one in
// memory, so no caller is handed it again.
func (c *core) clear(ctx context.Context) error {
	f, err := c.acquire(ctx, opClear)
	if err != nil {
		return err
	}
	start := time.Now()
	err = c.doClear(ctx)
	c.mu.Lock()
	c.failures, c.lastErr, c.nextAttempt, c.rtWarned = 0, nil, time.Time{}, ""
	c.saveFails, c.nextSave = 0, time.Time{}
	c.rejects = rejectState{}
	c.mu.Unlock()
	c.finish(f, start, nil)
	return err
}

// acquire waits until no operation is in flight and then makes op the one
// in flight, for operations that run on the caller's goroutine (Set, Clear).
// The caller must hand the flight to finish.
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
		f := &flight{op: op, done: make(chan struct{})}
		c.active.Add(1)
		c.fl = f
		c.mu.Unlock()
		return f, nil
	}
}

func (c *core) doClear(ctx context.Context) error {
	// Drop the token in memory first: even if the store fails, this
	// process stops using it, and nothing unsaved is left to save.
	old := c.cur.Swap(nil)
	p := c.o.Persister
	if p == nil {
		return nil
	}
	// If the delete fails, remember what must not come back: the stored
	// token if it can be read, else the one that was in memory, else any.
	failed := func(err error) error {
		stored, lerr := c.loadStored(ctx)
		c.mu.Lock()
		switch {
		case lerr == nil && stored == nil:
			c.cleared, c.clearedAny = nil, false // nothing stored after all
		case lerr == nil:
			c.cleared, c.clearedAny = stored, false
		case old != nil:
			c.cleared, c.clearedAny = old.full, false
		default:
			c.cleared, c.clearedAny = nil, true
		}
		c.mu.Unlock()
		return err
	}
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return failed(err)
	}
	defer unlock()
	if err := p.Delete(ctx, c.key); err != nil {
		return failed(c.wrap("deleting the stored token", err))
	}
	c.mu.Lock()
	c.cleared, c.clearedAny = nil, false
	c.mu.Unlock()
	return nil
}

// retryClear finishes, under the store lock, a Clear whose delete failed:
// the logged-out token is deleted if the store still holds it. A different
// stored token (a login in another process) ends the Clear's hold.
func (c *core) retryClear(ctx context.Context) {
	c.mu.Lock()
	tomb, anyTok := c.cleared, c.clearedAny
	c.mu.Unlock()
	if tomb == nil && !anyTok {
		return
	}
	stored, err := c.loadStored(ctx)
	if err != nil {
		return
	}
	if stored != nil && (anyTok || sameToken(stored, tomb)) {
		if derr := c.o.Persister.Delete(ctx, c.key); derr != nil {
			c.o.Logger.Debug("refresh: deleting the cleared token failed again", "key", c.key, "error", c.wrap("deleting", derr))
			return
		}
	}
	c.mu.Lock()
	c.cleared, c.clearedAny = nil, false
	c.mu.Unlock()
}

// exchange implements Cache.Exchange.
func (c *core) exchange(ctx context.Context, fn exchangeFunc) error {
	f, err := c.acquire(ctx, opExchange)
	if err != nil {
		return err
	}
	start := time.Now()
	var evs []Event
	err = c.doExchange(ctx, f, fn, &evs)
	f.err = err
	if errors.Is(err, ErrPersistFailed) {
		f.err = nil // published anyway
	}
	c.finish(f, start, evs)
	return err
}

func (c *core) doExchange(ctx context.Context, f *flight, fn exchangeFunc, evs *[]Event) error {
	start := time.Now()
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	// From here on the work runs to its end (bounded), as a refresh does:
	// a caller giving up must not lose a refresh token fn has rotated.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.RefreshTimeout)
	defer cancel()
	s := c.cur.Load()
	var cur *oauth2.Token
	if s != nil {
		cur = s.full
	}
	b, err := c.freshest(ctx, s, cur, start, false, evs)
	if err != nil {
		f.deadGrant = errors.Is(err, ErrReauthRequired)
		return err
	}
	cur = b.cur
	if cur == nil || cur.RefreshToken == "" {
		return &Error{kind: ErrReauthRequired, msg: "refresh: re-authentication required: no refresh token (not logged in)"}
	}
	arg := *cur // fn must not modify our copy
	tok, ferr := fn(ctx, &arg)
	if ferr != nil {
		secrets := secretsOf(cur)
		cerr := classify(ferr, secrets...)
		rt := cur.RefreshToken
		switch {
		case errors.Is(cerr, ErrNetwork) && !httpretry.NotSent(ferr):
			// C-03: the server may have rotated and the answer got lost.
			c.mu.Lock()
			c.suspectRT = rt
			c.mu.Unlock()
		case errors.Is(cerr, ErrReauthRequired):
			// The refresh token is dead: as a refresh's invalid_grant.
			cerr = c.markRotationLoss(cerr, rt, secrets)
			c.reauth(ctx, cur)
			f.deadGrant = true
		}
		return cerr
	}
	if tok == nil {
		return nil
	}
	if tok.AccessToken == "" || tok.AccessToken == cur.AccessToken {
		// No new access token for this cache: at most a rotated refresh
		// token, kept next to the access token in use.
		r := rotatedRT(tok, cur)
		if r == nil {
			return nil
		}
		return c.keepRotated(ctx, cur, r, b.prev, b.prevKnown, false, evs, "")
	}
	v, verr := c.validate(tok, cur)
	if verr != nil {
		if r := rotatedRT(tok, cur); r != nil {
			c.keepRotated(ctx, cur, r, b.prev, b.prevKnown, false, evs,
				"refresh: Exchange returned a token the cache refuses but with a new refresh token; keeping that refresh token")
		}
		return verr
	}
	now := time.Now()
	ns := c.newState(v, now, fromUpstream)
	var perr error
	if c.o.Persister != nil {
		if perr = c.persistNew(ctx, ns, b.prev, b.prevKnown, secretsOf(ns.full, cur)); perr != nil {
			*evs = append(*evs, Event{Kind: EventPersistFailed, Time: now, Expiry: ns.expiry, Err: perr})
		}
	}
	c.publish(ns)
	f.published = true
	*evs = append(*evs, Event{Kind: EventRefreshed, Time: now, Duration: time.Since(start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry})
	return perr
}

// publish makes ns the current state. A token that replaces one a resource
// server rejected is marked forced (see reject.go).
func (c *core) publish(ns *state) {
	if old := c.cur.Load(); old != nil && old.invalid {
		ns.forced = true
	}
	c.cur.Store(ns)
}

// tick is the idle timer: it flips the fast-path flag when the advisory
// point is reached, refreshes an idle process's token, retries saves and
// emits the refresh-token warning.
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
		case s.pending() && !now.Before(c.nextSave):
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
// delay (-1 when the timer is stopped).
func (c *core) armLocked(now time.Time) time.Duration {
	s := c.cur.Load()
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if !c.closed && s != nil && c.fl == nil {
		if s.fresh {
			earliest(s.advisoryAt)
			earliest(now.Add(checkEvery))
		}
		if !c.o.DisableIdleRefresh {
			if s.pending() {
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

// rtWarnAt returns when EventRefreshTokenExpiring is due for s, or zero.
func (c *core) rtWarnAt(s *state) time.Time {
	if c.o.RefreshTokenLead < 0 || s.rtExpiry.IsZero() || s.full.RefreshToken == "" || c.rtWarned == s.full.RefreshToken {
		return time.Time{}
	}
	return s.rtExpiry.Add(-c.o.RefreshTokenLead)
}

func (c *core) rtWarningLocked(now time.Time) (Event, bool) {
	s := c.cur.Load()
	if s == nil {
		return Event{}, false
	}
	w := c.rtWarnAt(s)
	if w.IsZero() || now.Before(w) {
		return Event{}, false
	}
	c.rtWarned = s.full.RefreshToken
	return Event{Kind: EventRefreshTokenExpiring, Time: now, Expiry: s.expiry, RefreshTokenExpiry: s.rtExpiry}, true
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

// finalSave is Close's last attempt to save a token whose save failed and
// whose refresh token is not stored at all (unsaved, C-04): without it a
// program that exits right away (a CLI command) takes the only live refresh
// token with it, and the next process presents the spent one. It runs once,
// under the store lock, bounded like a save retry (LockTimeout for the lock,
// RefreshTimeout for the work), with the same rules (resave: reduced sets,
// no resurrection of a logout). A partial token needs none: its refresh
// token is stored. Its events are emitted before Close returns.
func (c *core) finalSave() {
	s := c.cur.Load()
	if s == nil || !s.unsaved || c.o.Persister == nil {
		return
	}
	start := time.Now()
	unlock, err := c.lockKey(context.Background())
	if err != nil {
		c.o.Logger.Error("refresh: closing with an unsaved token: taking the store lock failed; its refresh token is lost with this process", "key", c.key, "error", err)
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.o.RefreshTimeout)
	defer cancel()
	var evs []Event
	c.retrySave(ctx, s, start, false, &evs)
	if s = c.cur.Load(); s != nil && s.unsaved {
		c.o.Logger.Error("refresh: closing with an unsaved token: the last save failed; its refresh token is lost with this process", "key", c.key)
	}
	for _, e := range evs {
		c.emit(e)
	}
}

// load reads the stored token. A token a failed Clear could not delete
// reads as absent.
func (c *core) load(ctx context.Context) (*oauth2.Token, error) {
	t, err := c.loadStored(ctx)
	if t == nil || err != nil {
		return t, err
	}
	c.mu.Lock()
	gone := c.clearedAny || (c.cleared != nil && sameToken(t, c.cleared))
	c.mu.Unlock()
	if gone {
		return nil, nil
	}
	return t, nil
}

// loadStored reads the stored token as it is.
func (c *core) loadStored(ctx context.Context) (*oauth2.Token, error) {
	t, err := c.o.Persister.Load(ctx, c.key)
	if err != nil {
		return nil, c.wrap("loading the stored token", err)
	}
	if t != nil && t.AccessToken == "" && t.RefreshToken == "" {
		return nil, nil
	}
	return t, nil
}

// save stores tok. A successful save replaces whatever a failed Clear left.
func (c *core) save(ctx context.Context, tok *oauth2.Token) error {
	if err := c.o.Persister.Save(ctx, c.key, tok); err != nil {
		return err
	}
	c.mu.Lock()
	c.cleared, c.clearedAny = nil, false
	c.mu.Unlock()
	return nil
}

// wrap reports a Persister or Locker failure.
func (c *core) wrap(what string, err error) error {
	e := &Error{Err: err}
	s := c.cur.Load()
	var secrets []string
	if s != nil {
		secrets = secretsOf(s.full)
	}
	e.msg = redact.Scrub("refresh: "+what+": "+err.Error(), maxErrorLen, secrets...)
	return e
}

// sameToken reports whether a and b are the same credential.
func sameToken(a, b *oauth2.Token) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// sameRefreshToken reports whether a and b carry the same refresh token
// (for a reduced stored set of a token).
func sameRefreshToken(a, b *oauth2.Token) bool {
	return a != nil && b != nil && a.RefreshToken != "" && a.RefreshToken == b.RefreshToken
}

// fullNow returns the full token in memory, or nil.
func (c *core) fullNow() *oauth2.Token {
	if s := c.cur.Load(); s != nil {
		return s.full
	}
	return nil
}

// secretsOf lists the secrets of the given tokens, for scrubbing messages.
func secretsOf(toks ...*oauth2.Token) []string {
	var out []string
	for _, t := range toks {
		if t == nil {
			continue
		}
		for _, s := range []string{t.AccessToken, t.RefreshToken, tokenx.IDToken(t)} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
