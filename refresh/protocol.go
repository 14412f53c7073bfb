package refresh

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/httpretry"
	"github.com/tokenward/tokenward/internal/redact"
)

// The cross-process protocol.
//
// A refresh and an Exchange follow one path, under the store lock:
//
//  1. lock (lockKey), waiting at most LockTimeout;
//  2. reload (freshest): find the freshest full token, which is ours when
//     its save failed (that save is retried first), else the stored one
//     when another process replaced ours (adopted when it is fresh); fail
//     rather than present a refresh token that may be stale;
//  3. present it (ask) to the Upstream or to the Exchange function; a
//     failure in transit marks the refresh token as suspect, a dead grant
//     deletes the dead token;
//  4. accept the answer: validate it, keep a rotated refresh token even
//     from an answer that is refused (keepRotated), save the new token and
//     read it back before anyone may use it (persist.go), publish it;
//  5. unlock.
//
// A refresh token is never burnt: the only one presented is the freshest
// the cache can prove, a rotated one is stored before the access token
// that came with it is used, and one that may have been rotated in transit
// is presented again only within RotationGrace.

// lockKey takes the cross-process lock for c.key, if the Persister is a
// Locker. The wait is bounded by LockTimeout (and ctx), not by
// RefreshTimeout: another process may hold the lock for a whole refresh of
// its own. The returned unlock also releases the wait's context, in case
// the Locker ties the lock to it.
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

// refresh is one refresh (opRefresh) under the protocol.
func (c *core) refresh(ctx context.Context, f *flight) error {
	s := c.cur.Load()
	var cur *token
	if s != nil {
		cur = s.full
	}
	if s == nil && c.o.Persister != nil {
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
	return c.protocol(ctx, f, s, cur)
}

// protocol runs steps 1 to 5 for f, a refresh or an Exchange, from s, the
// state in memory, and cur, the token to present without a store.
func (c *core) protocol(ctx context.Context, f *flight, s *state, cur *token) error {
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if f.op == opExchange {
		// An Exchange runs under its caller's ctx. From here on the work
		// runs to its end (bounded), as a refresh does: a caller giving up
		// must not lose a refresh token the server has just rotated.
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.RefreshTimeout)
	defer cancel()
	b, err := c.freshest(ctx, f, s, cur)
	switch {
	case err != nil:
		f.deadGrant = errors.Is(err, ErrReauthRequired)
		return err
	case f.op == opRefresh && b.adopted:
		return nil // another process refreshed: nothing to present
	case f.op == opExchange && (b.cur == nil || b.cur.refresh == ""):
		return &Error{kind: ErrReauthRequired, msg: "refresh: re-authentication required: no refresh token (not logged in)"}
	}
	return c.present(ctx, f, b)
}

// basis is what a refresh or an Exchange presents, found under the store
// lock by freshest.
type basis struct {
	s         *state // the state in memory (its saved twin after a save retry)
	cur       *token // the freshest full token known; nil if none
	prev      *token // what the Persister holds, for a new token whose save fails
	prevKnown bool   // prev was read (nil then means nothing is stored)
	unsaved   bool   // cur is newer than the stored token: never read the store over it
	adopted   bool   // cur is a fresh token another process stored, now published
}

// errRemoved is the error when another process removed the stored token.
func errRemoved() error {
	return &Error{kind: ErrReauthRequired, msg: "refresh: re-authentication required: the stored token was removed"}
}

// freshest finds, under the store lock, the freshest full token: the one in
// memory when it is newer than the store's (a save failed; the save is
// retried first), else the stored one when another process replaced ours,
// adopting it when it is fresh. s is the state in memory and cur the token
// to present without a store (s.full, or at startup the token read before
// the lock).
//
// It fails rather than present a refresh token that may be stale: when the
// store cannot be read under the lock, another process may have rotated
// the refresh token in memory already, and presenting it again is a reuse
// that revokes the whole token family.
func (c *core) freshest(ctx context.Context, f *flight, s *state, cur *token) (b basis, err error) {
	b.s, b.cur = s, cur
	if c.o.Persister == nil {
		return b, nil
	}
	c.retryClear(ctx)
	if s != nil && s.save.kind == unsaved {
		// Our token is newer than the stored one (a save failed): save it
		// now, and never read the older stored token over it, whose
		// refresh token is spent.
		r, stored, serr := c.resave(ctx, s)
		switch r {
		case resaved:
			if b.s = c.markSaved(s); b.s == nil {
				return b, &Error{msg: "refresh: no token"} // cleared meanwhile (cannot happen: Clear waits for us)
			}
			b.cur, b.prev, b.prevKnown = b.s.full, b.s.full, true
			f.event(c.persistedEvent(f, b.s))
		case resavePartial:
			// The refresh token is stored now (in a reduced set): the
			// store holds our refresh token again.
			if b.s = c.markPartial(s); b.s == nil {
				return b, &Error{msg: "refresh: no token"}
			}
			b.cur, b.prev, b.prevKnown = b.s.full, stored, true
		case resaveFailed:
			c.o.Logger.Debug("refresh: save retry failed", "key", c.key, "error", c.wrap("saving the token", serr))
			b.unsaved, b.prev, b.prevKnown = true, s.save.prev, s.save.prevKnown
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
	case cur != nil && stored.access == "" && sameRefreshToken(stored, cur):
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
			f.event(Event{Kind: EventAdopted, Time: now, Duration: now.Sub(f.start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry})
		}
	default:
		b.prev, b.prevKnown = stored, true
	}
	return b, nil
}

// present is the part of the protocol a refresh and an Exchange share
// once freshest has chosen b.cur: present it, classify the answer, keep a
// rotated refresh token, save and publish the new token.
func (c *core) present(ctx context.Context, f *flight, b basis) error {
	ans, adopted, err := c.ask(ctx, f, b)
	if err != nil || adopted {
		return err
	}
	return c.accept(ctx, f, b, ans)
}

// ask presents b.cur (a copy: the callee must not change ours) to the
// Upstream, or for an Exchange to its function, and returns the answer,
// or the failure classified. For a refresh whose answer was lost in
// transit, it first reloads the store and adopts a fresh token another
// process stored meanwhile (adopted), then retries blindly at most once
// and only within RotationGrace.
func (c *core) ask(ctx context.Context, f *flight, b basis) (ans *token, adopted bool, err error) {
	cur := b.cur
	rt := ""
	if cur != nil {
		rt = cur.refresh
	}
	for retried := false; ; retried = true {
		var arg *oauth2.Token
		if cur != nil {
			arg = cur.oauth2()
		}
		sent := time.Now()
		var res *oauth2.Token
		if f.op == opExchange {
			res, err = f.fn(ctx, arg)
		} else {
			res, err = c.up.Token(ctx, arg)
		}
		if err == nil {
			return fromOAuth2(res), false, nil
		}
		secrets := secretsOf(cur)
		cerr := classifyAs(err, f.op.failure(), secrets)
		switch {
		case errors.Is(cerr, ErrNetwork) && rt != "" && !httpretry.NotSent(err):
			// The request may have reached the server, which may have
			// rotated the refresh token and lost the answer.
			if f.op == opRefresh {
				if c.adoptAfterLoss(ctx, f, b) {
					return nil, true, nil
				}
				if !retried && c.o.RotationGrace > 0 && time.Since(sent) < c.o.RotationGrace && ctx.Err() == nil {
					c.o.Logger.Debug("refresh: retrying once within the rotation grace", "key", c.key)
					continue
				}
			}
			c.mu.Lock()
			c.suspectRT = rt
			c.mu.Unlock()
		case errors.Is(cerr, ErrReauthRequired) && rt == "":
			// Nothing to present: the grant died earlier (or there never
			// was a login). Its cause says more than "not logged in".
			c.mu.Lock()
			dead := c.deadErr
			c.mu.Unlock()
			if dead != nil {
				cerr = dead
			}
		case errors.Is(cerr, ErrReauthRequired):
			// The grant is dead: delete the dead token, stop refreshing.
			cerr = c.markRotationLoss(cerr, rt, secrets)
			c.reauth(ctx, cur)
			f.deadGrant = true
			c.mu.Lock()
			c.deadErr = cerr
			c.mu.Unlock()
		}
		return nil, false, cerr
	}
}

// failure names what failed, for the message of an error that fits none of
// the sentinels.
func (op opKind) failure() string {
	if op == opExchange {
		return "the Exchange function failed"
	}
	return "token refresh failed"
}

// adoptAfterLoss is the reload after an answer lost in transit: another
// process may have refreshed meanwhile, and its token is adopted if it is
// fresh. Nothing else is taken from the store: a stored token that is not
// fresh may be older than the one just presented, its refresh token spent;
// and a token newer than the store's (b.unsaved) skips the reload.
func (c *core) adoptAfterLoss(ctx context.Context, f *flight, b basis) bool {
	if c.o.Persister == nil || b.unsaved {
		return false
	}
	stored, err := c.load(ctx)
	if err != nil || stored == nil || sameToken(stored, b.cur) {
		return false
	}
	now := time.Now()
	ns := c.newState(stored, now, fromStore)
	if !ns.fresh {
		return false
	}
	c.publish(ns)
	f.event(Event{Kind: EventAdopted, Time: now, Duration: now.Sub(f.start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry})
	return true
}

// errDeadOnArrival is the error when the new access token had already
// expired when it arrived.
var errDeadOnArrival = &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: it issued an access token that had already expired (is its clock, or this machine's, wrong?)"}

// accept takes an answer to b.cur: it validates it, keeps a rotated
// refresh token even from an answer it refuses, saves the new token (and
// only then) publishes it. An Exchange function may answer nil (nothing
// changes) or a token without a new access token (only its refresh token
// is taken).
func (c *core) accept(ctx context.Context, f *flight, b basis, ans *token) error {
	cur := b.cur
	if f.op == opExchange {
		if ans == nil {
			return nil
		}
		if ans.access == "" || ans.access == cur.access {
			// No new access token for this cache: at most a rotated
			// refresh token, kept next to the access token in use.
			if r := rotatedRT(ans, cur); r != nil {
				c.keepRotated(ctx, f, b, r)
			}
			return nil
		}
	}
	v, err := c.validate(ans, cur)
	if err != nil {
		if r := rotatedRT(ans, cur); r != nil {
			c.o.Logger.Warn("refresh: the answer was refused but carried a new refresh token; keeping that refresh token", "key", c.key)
			c.keepRotated(ctx, f, b, r)
		}
		return err
	}
	if f.op == opRefresh && cur != nil && b.s != nil && v.access == cur.access && v.refresh == cur.refresh && v.expiry.Equal(b.s.rawExpiry) {
		// The same token again: back off instead of looping.
		f.noProgress = true
		c.o.Logger.Debug("refresh: upstream returned the current token; backing off", "key", c.key)
		return nil
	}
	now := time.Now()
	ns := c.newState(v, now, fromUpstream)
	c.persistNew(ctx, f, ns, b)
	c.publish(ns)
	if ns.dead {
		// Saved and published all the same: its refresh token may be a
		// rotated one, the only live one there is.
		return errDeadOnArrival
	}
	f.published = true
	f.event(Event{Kind: EventRefreshed, Time: now, Duration: time.Since(f.start), Expiry: ns.expiry, RefreshTokenExpiry: ns.rtExpiry})
	return nil
}

// publish makes ns the current state. A token that replaces one a resource
// server rejected is marked forced (see reject.go).
func (c *core) publish(ns *state) {
	if ns.full.refresh != "" {
		c.mu.Lock()
		c.deadErr = nil // a live grant again
		c.mu.Unlock()
	}
	if old := c.cur.Load(); old != nil && old.invalid {
		ns.forced = true
	}
	c.cur.Store(ns)
}
