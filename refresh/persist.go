package refresh

import (
	"context"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/tokenx"
)

// Persistence before use.
//
// A new token is saved, and read back by the Persister, before it is
// published or returned, so that a rotated refresh token never lives in
// memory only. When the full set cannot be saved, the refresh token the
// server just rotated away is spent while the store still holds it, so,
// still under the store lock, smaller sets are saved (saveChain): another
// process that refreshes next must find the new refresh token, not the
// spent one. Whatever could not be saved is retried in the background on
// the next access, and by Close for a token whose refresh token is stored
// nowhere. A save retry never resurrects a token another process deleted
// (a logout) and never adopts the token it overwrites (it may be a late
// write of this process, whose refresh token is spent).

// saveKind says how much of a state's token the Persister holds.
type saveKind uint8

const (
	saved   saveKind = iota // all of it (or there is no Persister)
	unsaved                 // nothing: the store holds an older token, whose refresh token is spent
	partial                 // a reduced set holding its refresh token (reducedSets); the full set is retried
)

// String returns the kind's name, for logs.
func (k saveKind) String() string {
	switch k {
	case unsaved:
		return "unsaved"
	case partial:
		return "partial"
	}
	return "saved"
}

// saveState is whether a state's token is stored. The zero value is a
// saved token; a state changes it by assigning a whole new value.
type saveState struct {
	kind saveKind
	// prev is what the Persister held when an unsaved token's save failed
	// (nil: nothing), if prevKnown. A save retry that finds that entry
	// deleted since does not bring the token back (the user logged out, or
	// another process found the grant dead).
	prev      *token
	prevKnown bool
}

// pending reports whether a save is still to be retried: the token is not
// stored at all, or only as a reduced set.
func (v saveState) pending() bool { return v.kind != saved }

// removedSince reports whether the entry the store held when the save
// failed has been deleted since; stored is what it holds now.
func (v saveState) removedSince(stored *token) bool {
	return stored == nil && v.prevKnown && v.prev != nil
}

// saveNew saves t, a new token whose predecessor's refresh token may be
// spent, under the store lock (saveChain), and returns the save state t has
// then. When its full set could not be saved it also returns the
// ErrPersistFailed error to report (once) and schedules the retry; t is
// then partial, or unsaved over what the store still holds (b.prev, read
// now if unknown, so that a retry does not undo a later logout).
func (c *core) saveNew(ctx context.Context, t *token, b basis) (saveState, error) {
	if c.o.Persister == nil {
		return saveState{}, nil
	}
	stored, serr := c.saveChain(ctx, t)
	if serr == nil {
		return saveState{}, nil
	}
	v := saveState{kind: partial}
	if stored == nil {
		v = saveState{kind: unsaved, prev: b.prev, prevKnown: b.prevKnown}
		if !v.prevKnown {
			var lerr error
			v.prev, lerr = c.load(ctx)
			v.prevKnown = lerr == nil
		}
	}
	c.saveFailedFirst(time.Now()) // after the save, which may have hung for long
	perr := &Error{kind: ErrPersistFailed, Err: serr}
	perr.msg = perr.build(secretsOf(t, b.cur))
	if stored != nil {
		c.o.Logger.Warn("refresh: the full token set could not be saved; a reduced set holding the refresh token was saved instead, the full set is retried", "key", c.key)
	}
	return v, perr
}

// persistNew saves ns.full, a new token, before it is published. A state
// whose save failed takes the slow path until the save is retried.
func (c *core) persistNew(ctx context.Context, f *flight, ns *state, b basis) {
	now := time.Now()
	save, perr := c.saveNew(ctx, ns.full, b)
	ns.save = save
	if perr != nil {
		ns.fresh = false
		c.persistFailed(f, now, ns, perr)
	}
}

// persistFailed reports, once, that the token of s could not be saved in
// full: as EventPersistFailed, and to the caller of Set or Exchange.
func (c *core) persistFailed(f *flight, now time.Time, s *state, perr error) {
	f.persistErr = perr
	f.event(Event{Kind: EventPersistFailed, Time: now, Expiry: s.expiry, Err: perr})
}

// reducedExpiry is the Expiry of a reduced set without an access token: long
// past, so that no reader serves its empty access token.
var reducedExpiry = time.Unix(0, 0).UTC()

// reducedSets returns the smaller token sets saveChain falls back to when
// the full set of t cannot be saved (a keychain entry size limit, an ID
// token or access token too large for store.MaxEntrySize, or a transient
// failure): first t without its extra members (id_token, scope, ...; the
// refresh token's expiry is kept), then the refresh token alone (with its
// expiry; both keep the DPoP key and its thumbprint, internal/tokenx
// KeyDPoPKey and KeyDPoPJKT, since a refresh token bound to the key is
// useless without it), with no access token and an Expiry long past (reducedExpiry), so
// that whoever loads it refreshes with its refresh token at once. A set
// equal to t, or without a refresh token to keep, is left out.
func reducedSets(t *token) []*token {
	var extra map[string]any
	if rte := t.rtExpiry(); !rte.IsZero() {
		extra = map[string]any{tokenx.KeyRefreshTokenExpiry: rte}
	}
	for _, name := range []string{tokenx.KeyDPoPKey, tokenx.KeyDPoPJKT} {
		if v, ok := t.extra[name]; ok {
			if extra == nil {
				extra = map[string]any{}
			}
			extra[name] = v
		}
	}
	var out []*token
	if t.hasExtras() {
		out = append(out, &token{access: t.access, typ: t.typ, refresh: t.refresh, expiry: t.expiry, extra: extra})
	}
	if t.refresh != "" && t.access != "" {
		out = append(out, &token{refresh: t.refresh, expiry: reducedExpiry, extra: extra})
	}
	return out
}

// saveChain saves t, a new token whose predecessor's refresh token may be
// spent, under the store lock. If the full set cannot be saved it saves the
// reduced sets of reducedSets, one after the other, so that the store
// never keeps a refresh token the server consumed while a smaller set
// could hold the new one. It returns what the store now holds of t (t, a
// reduced set, or nil) and the full save's error.
func (c *core) saveChain(ctx context.Context, t *token) (stored *token, err error) {
	if err = c.save(ctx, t); err == nil {
		return t, nil
	}
	for _, r := range reducedSets(t) {
		if ctx.Err() != nil {
			break
		}
		rerr := c.save(ctx, r)
		if rerr == nil {
			return r, err
		}
		c.o.Logger.Debug("refresh: saving a reduced token set failed too", "key", c.key,
			"error", redact.Scrub("refresh: saving a reduced token set: "+rerr.Error(), maxErrorLen, secretsOf(t, c.fullNow())...))
	}
	return nil, err
}

// resaveResult is the outcome of a save retry.
type resaveResult int

const (
	resaveFailed     resaveResult = iota // the save failed again
	resaved                              // the token is stored now
	resaveGone                           // the entry was deleted elsewhere since the save failed
	resavePartial                        // only a reduced set (the refresh token) is stored
	resaveSuperseded                     // partial: another process replaced the entry; nothing to save
)

// resave retries saving s.full, an unsaved token, falling back to reduced
// sets as saveChain does. It reads the store first: if the entry that was
// there when the save failed has been deleted since, the token is not
// resurrected. Any other stored token is overwritten, never adopted: it may
// be an earlier save of this process that completed late (a hung keychain
// call), whose refresh token is spent. When the store cannot be read the
// token is saved anyway: losing a rotated refresh token is worse. It also
// returns what the store holds of s.full afterwards.
func (c *core) resave(ctx context.Context, s *state) (resaveResult, *token, error) {
	stored, lerr := c.load(ctx)
	switch {
	case lerr != nil:
	case stored != nil && sameToken(stored, s.full):
		return resaved, stored, nil // stored after all (the read-back had failed)
	case s.save.removedSince(stored):
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

// resaveFull retries saving the full set of s, a partial token, but only
// while the store still holds its refresh token: any other stored token was
// put there by another process, which may have refreshed with ours (it is
// spent then), and the store is authoritative again.
func (c *core) resaveFull(ctx context.Context, s *state) (resaveResult, error) {
	stored, lerr := c.load(ctx)
	switch {
	case lerr != nil:
		return resaveFailed, lerr
	case stored == nil:
		return resaveGone, nil
	case stored.refresh != s.full.refresh:
		return resaveSuperseded, nil
	}
	if err := c.save(ctx, s.full); err != nil {
		return resaveFailed, err
	}
	return resaved, nil
}

// persist retries saving an unsaved or partial token (opPersist), in the
// background: callers keep using the token meanwhile.
func (c *core) persist(ctx context.Context, f *flight) {
	s := c.cur.Load()
	if s == nil || !s.save.pending() || c.o.Persister == nil {
		return
	}
	unlock, err := c.lockKey(ctx)
	if err != nil {
		c.saveFailed(err)
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, c.o.RefreshTimeout)
	defer cancel()
	c.retrySave(ctx, f, s)
}

// retrySave retries the save of s, a pending state, under the store lock,
// and records the outcome.
func (c *core) retrySave(ctx context.Context, f *flight, s *state) {
	var r resaveResult
	var err error
	if s.save.kind == unsaved {
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
		f.event(c.persistedEvent(f, s))
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
		f.event(Event{Kind: EventReauthRequired, Time: now, Duration: now.Sub(f.start), Expiry: s.expiry, Err: errRemoved()})
	}
	c.mu.Lock()
	c.saveFails, c.nextSave = 0, time.Time{}
	c.mu.Unlock()
}

// persistedEvent reports that s, whose save had failed, is stored now.
func (c *core) persistedEvent(f *flight, s *state) Event {
	now := time.Now()
	e := Event{Kind: EventPersisted, Time: now, Duration: now.Sub(f.start)}
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

// saveFailed records a failed save retry: the next waits for a backoff.
func (c *core) saveFailed(err error) {
	c.mu.Lock()
	c.saveFails++
	c.nextSave = time.Now().Add(c.backoff(c.saveFails))
	c.mu.Unlock()
	// Reported once (EventPersistFailed) when the token arrived; retries
	// only log at debug level.
	c.o.Logger.Debug("refresh: save retry failed", "key", c.key, "error", c.wrap("saving the token", err))
}

// markSaved replaces s (or its invalidated twin) by a saved copy.
func (c *core) markSaved(s *state) *state {
	return c.markSave(s, saveState{})
}

// markPartial replaces s (or its invalidated twin) by a copy whose refresh
// token is stored in a reduced set: the full set is still to be retried.
func (c *core) markPartial(s *state) *state {
	return c.markSave(s, saveState{kind: partial})
}

// markSave replaces s (or its invalidated twin, the same token) by a copy
// with save state v, and returns it; nil (or another token's state) when
// the cache moved on meanwhile.
func (c *core) markSave(s *state, v saveState) *state {
	for {
		cur := c.cur.Load()
		if cur == nil || cur.full != s.full {
			return cur
		}
		n := cur.clone()
		n.save = v
		n.fresh = n.freshAt(time.Now())
		if c.cur.CompareAndSwap(cur, n) {
			return n
		}
	}
}

// finalSave is Close's last attempt to save a token whose save failed and
// whose refresh token is stored nowhere (unsaved): without it a program
// that exits right away (a CLI command) takes the only live refresh token
// with it, and the next process presents the spent one. It runs once,
// under the store lock, bounded like a save retry (LockTimeout for the
// lock, RefreshTimeout for the work), with the same rules (resave: reduced
// sets, no resurrection of a logout). A partial token needs none: its
// refresh token is stored. Its events are emitted before Close returns.
func (c *core) finalSave() {
	s := c.cur.Load()
	if s == nil || s.save.kind != unsaved || c.o.Persister == nil {
		return
	}
	f := &flight{op: opPersist, start: time.Now()}
	unlock, err := c.lockKey(context.Background())
	if err != nil {
		c.o.Logger.Error("refresh: closing with an unsaved token: taking the store lock failed; its refresh token is lost with this process", "key", c.key, "error", err)
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.o.RefreshTimeout)
	defer cancel()
	c.retrySave(ctx, f, s)
	if s = c.cur.Load(); s != nil && s.save.kind == unsaved {
		c.o.Logger.Error("refresh: closing with an unsaved token: the last save failed; its refresh token is lost with this process", "key", c.key)
	}
	for _, e := range f.evs {
		c.emit(e)
	}
}

// load reads the stored token. A token a failed Clear could not delete
// reads as absent (clear.go).
func (c *core) load(ctx context.Context) (*token, error) {
	t, err := c.loadStored(ctx)
	if t == nil || err != nil {
		return t, err
	}
	if c.clearedHolds(t) {
		return nil, nil
	}
	return t, nil
}

// loadStored reads the stored token as it is. A set with neither an access
// token nor a refresh token is nothing.
func (c *core) loadStored(ctx context.Context) (*token, error) {
	t, err := c.o.Persister.Load(ctx, c.key)
	if err != nil {
		return nil, c.wrap("loading the stored token", err)
	}
	if t == nil || (t.AccessToken == "" && t.RefreshToken == "") {
		return nil, nil
	}
	return fromOAuth2(t), nil
}

// save stores t. A successful save replaces whatever a failed Clear left.
func (c *core) save(ctx context.Context, t *token) error {
	if err := c.o.Persister.Save(ctx, c.key, t.oauth2()); err != nil {
		return err
	}
	c.forgetCleared()
	return nil
}

// fullNow returns the full token in memory, or nil.
func (c *core) fullNow() *token {
	if s := c.cur.Load(); s != nil {
		return s.full
	}
	return nil
}

// wrap reports a Persister or Locker failure: "refresh: <what>: <cause>",
// without any secret of the token in memory.
func (c *core) wrap(what string, err error) error {
	e := &Error{Err: err}
	var secrets []string
	if s := c.cur.Load(); s != nil {
		secrets = secretsOf(s.full)
	}
	e.msg = redact.Scrub("refresh: "+what+": "+err.Error(), maxErrorLen, secrets...)
	return e
}
