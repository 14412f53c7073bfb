// Package refresh is tokenward's token cache: lock-free reads, early
// background refresh, single-flight, cross-process locking and persistence
// before use. Most users will use client.New, which wires a [Cache] to the
// store and the transport; use this package directly to put the cache in
// front of your own grant ([Upstream]) or an existing [oauth2.TokenSource].
//
//	c, err := refresh.New(key, upstream, func(o *refresh.Options) {
//		o.Persister = myStore // optional; a Locker too for cross-process safety
//		o.Logger = logger
//	})
//	defer c.Close()
//	tok, err := c.Token(ctx) // cheap: call it for every request
//
// # Reads
//
// [Cache.Token] of a fresh token is one atomic load: no lock, no clock
// read, no allocation. It returns the same *oauth2.Token pointer until the
// token changes (the transport caches the Authorization header by pointer)
// and the returned token never carries the refresh token (O-02), neither in
// RefreshToken nor among its extra fields (Extra("refresh_token") of an
// x/oauth2 token's raw response; OpenID Native SSO's device_secret is
// dropped too; id_token and the other fields are kept): the refresh token
// stays inside the cache and goes only to the Upstream and the Persister.
// There is one cache per key per process: a second [New] for the same key
// returns a handle to the same cache.
//
// # Timing
//
// A token's lifetime L runs from when the cache received it to its expiry.
// The expiry is the token's Expiry; when that is zero, the exp claim of a
// JWT access token (a hint, not verified); else [Options.DefaultLifetime]
// (1 h). (The client package sets Expiry to the earlier of expires_in,
// counted from when the request was sent, and the JWT's exp converted to
// the local clock, so a token is never trusted for longer than either says.)
// A token is used for as long as its server says and never longer, however
// short: the schedule below scales down with L, to lifetimes of a second
// and less, and a short lifetime is not a failure. A new token that
// arrives already expired is never served: its refresh counts as failed
// (callers get [ErrTemporarilyUnavailable]) and backs off (see "Failures"),
// so such a server cannot cause a refresh loop; the token is saved all the
// same, since its refresh token may be a rotated one. Lifetimes longer than
// [Options.MaxLifetime] (24 h) are cut to it. The public token's Expiry is
// this effective expiry: every token has a defined, finite schedule.
//
// From the lifetime the cache derives two points:
//
//   - the mandatory window W = min(MandatoryWindow (10 s), L/10) before
//     expiry: only inside it (or after expiry, or after Invalidate, or before
//     the first token) does a caller wait for a refresh;
//   - the advisory point, expiry - m, with the early margin
//     m = clamp((1-AdvisoryFraction)·L, 2W, MaxAdvisoryMargin) times a random
//     factor in [1-Jitter, 1+Jitter]. With the defaults (0.80, 0.25, 5 min)
//     a 12 s token refreshes between 75 % and 85 % of its life, a 1 h token
//     between 3m45s and 6m15s before expiry, never hours early.
//
// From the advisory point on, the next Token call (or, in an idle process,
// a timer; see [Options.DisableIdleRefresh]) starts one background refresh
// and returns the current token at once. A timer also flips the fast path's
// freshness flag at the advisory point and looks at the wall clock at least
// every 10 s, so a suspended machine notices expiry soon after it resumes.
//
// # Single-flight
//
// At most one refresh per key is in flight in a process. The in-flight flag
// is set before the refresh goroutine starts. The refresh runs under
// context.WithoutCancel of the context of the caller that started it, with
// its own deadline: [Options.LockTimeout] (60 s) for the wait for the store
// lock plus [Options.RefreshTimeout] (30 s) for the work once the lock is
// held. No single caller can cancel it. Each waiting caller selects on its
// own context and returns ctx.Err() as soon as it ends, while the refresh
// completes for everyone else.
//
// # Cross-process protocol
//
// When the [Persister] also implements [Locker], a refresh takes the lock
// for the key (waiting at most [Options.LockTimeout]; the lock is not
// reentrant, so code holding it must not call the cache for that key),
// reloads the stored token and, if another process already refreshed (the
// stored token differs from ours and is not yet due for refresh), adopts it
// without calling the [Upstream] ([EventAdopted]).
// Otherwise it calls the Upstream with the freshest token it knows (the
// stored refresh token), saves the new token, publishes it in memory and only
// then unlocks. On the first Token call the store is read before the
// Upstream is asked for anything. A stored token that another process
// deleted (logout, or a dead grant) is not resurrected: the cache reports
// [ErrReauthRequired]; a token stored again later (a new login, or another
// process's save) is adopted as usual.
//
// If the store cannot be read under the lock, the refresh fails without
// calling the Upstream: another process may have rotated the refresh token
// in memory and stored its successor, and presenting the spent one is a
// reuse that revokes the whole token family (C-02). The valid token in use
// is still served and the refresh is retried with backoff (see
// "Failures"). The one exception is a token in memory whose save failed
// (below): it is newer than anything stored, by construction, so the
// refresh goes on with it.
//
// # Persistence before use
//
// A new token is saved (the Persister reads it back) before it is
// published or returned, so a rotated refresh token is never only in memory
// (O-01). If the save fails, the refresh token the server just rotated away
// is spent, and the store, which still holds it, must not keep it once the
// lock is released: another process refreshing next would present it and
// the server would revoke the family. So, still under the lock, the cache
// saves smaller sets of the new token: first without its extra fields
// (id_token, scope, ...; the refresh token's expiry is kept), then, if that
// fails too, the refresh token alone (and its expiry), with an empty access
// token and an Expiry long past. A set without an access token is never
// served, by this process or by another that loads it: the cache treats it
// as expired and refreshes with its refresh token. This survives a
// transient failure and a token set larger than the store takes (a
// keychain item limit, store.MaxEntrySize with a huge access token or ID
// token). While only a reduced set is stored the token is "partial": its
// refresh token is safe and the store is authoritative again, so the full
// set is retried only while the store still holds that refresh token
// (never over a token another process stored since).
//
// If no set can be saved (the store refuses every write), the cache keeps
// using the new token in memory, reports [ErrPersistFailed] once (also when
// only a reduced set was saved) through [Options.OnEvent] and the logger,
// and retries the save on the next access (and from the idle timer) with
// backoff. The retry runs in the background: callers keep getting the
// valid token without waiting for the store, and [EventPersisted] reports
// the retry that stores the full set. Until the refresh token is stored the
// older stored token is never read over the newer one, so the old refresh
// token is never presented again (C-04). A retry first reads the store: if
// the entry that was there when the save failed has been deleted meanwhile
// (a logout or a dead grant in another process) the token is not saved
// back, and the cache reports [ErrReauthRequired] once the access token is
// no longer usable. Any other stored token is overwritten, never adopted:
// it may be an earlier save of this process that completed late (a hung
// keychain), whose refresh token is spent. [Cache.Set] publishes a token
// obtained by a login, and [Cache.Exchange] the token its function
// returns, under the same rules.
//
// Meanwhile the stored entry, and its spent refresh token, stays: deleting
// it would log every other process out, and a store that refuses all writes
// usually refuses reads and deletes too. Another process that refreshes
// before the retry succeeds presents that spent refresh token; a server
// reuse grace (see "Failures") covers it. [Cache.Close] of the last handle
// makes one final save attempt of a token whose refresh token is stored
// nowhere, under the lock and bounded like a save retry (LockTimeout for
// the lock, RefreshTimeout for the work), so that a program that exits at
// once (a CLI command) does not take the only live refresh token with it.
//
// [Cache.Clear] drops the token in memory and deletes the stored one under
// the lock. If the delete fails, the token it could not delete is never
// loaded or adopted again: the delete is retried under the lock before the
// next refresh, and a successful save or [Cache.Set] ends this. A
// different token that another process stores later (a new login) is
// adopted as usual.
//
// # Exchanging the refresh token
//
// [Cache.Exchange] lends the cache's full token, refresh token included, to
// a function under the same exclusivity as a refresh (the operation in
// flight and the store lock), for grants that need the refresh token
// without being this cache's Upstream: the client package mints access
// tokens for further RFC 8707 resources from the login's one refresh
// token. The function gets the freshest token (as a refresh presents), and
// the token it returns (a rotated refresh token, a whole new token set)
// becomes the cache's under persistence before use; an [ErrReauthRequired]
// from it is a dead grant, handled as a refresh's invalid_grant.
//
// # Failures
//
// While the current token is valid, a failed refresh changes nothing for
// callers: they keep getting the old token and the refresh is retried with
// jittered exponential backoff ([Options.RetryBackoffMin] 1 s to
// [Options.RetryBackoffMax] 30 s). After expiry a caller waits for one
// attempt; during backoff it gets the last error at once. A refresh that
// returns the token the cache already had backs off the same way (capped at
// that token's expiry while it is valid). An expired or invalidated token is
// never returned, backoff or not: during backoff such a caller gets the
// last error, or [ErrTemporarilyUnavailable] when the last refresh brought
// no new token.
//
// An answer the cache refuses (no access token, or a token_type it cannot
// send) that carries a new refresh token is not thrown away entirely: the
// server may have rotated, so the new refresh token replaces the presented
// one, in memory and in the Persister, next to the access token in use (its
// expiry unchanged). The refresh still fails and backs off, and the retry
// presents the new refresh token, never the spent one (O-07).
//
// invalid_grant (or invalid_token for the refresh token) ends the retries:
// the dead token is deleted from the Persister (if it still holds it), the
// access token is served until its mandatory window, and then Token returns
// [ErrReauthRequired] ([EventReauthRequired] is emitted at once).
//
// When a refresh fails in transit after the request may have reached the
// server (timeout, reset; not DNS, dial or certificate errors), the server
// may have rotated the refresh token and lost the answer (C-03). The cache
// first reloads the store and adopts a fresh token another process stored
// meanwhile; it never switches to a stored token that is not fresh (it may
// be older than the one just presented, its refresh token spent), and it
// skips the reload when its own token is newer than the store's (a save
// failed). It retries blindly with the same refresh token at most once and
// only within [Options.RotationGrace] (default 0: never), and an
// invalid_grant that later follows such a failure also matches
// [ErrPossibleRotationLoss].
// Recommended server setting: a refresh-token reuse grace of 10-30 s.
//
// # Errors
//
// Upstream errors are classified in this order: an [*Error], or an error
// that already matches one of this package's sentinels, keeps its kind; an
// *oauth2.RetrieveError is mapped by its error code and HTTP status; a value
// with an OAuthError() (status int, code, description string) method (as
// internal/oauthwire's Error has) is mapped the same way; net errors and
// timeouts become [ErrNetwork]. Codes: invalid_grant, invalid_token ->
// [ErrReauthRequired]; invalid_client, unauthorized_client,
// unsupported_grant_type, invalid_scope, invalid_request (and 401/403
// without a code) -> [ErrClientRejected]; temporarily_unavailable,
// server_error, slow_down, 5xx, 408, 429 -> [ErrTemporarilyUnavailable].
// A token_type other than Bearer (any case) or empty yields
// [ErrUnsupportedTokenType] (O-11). The [*Error] carries StatusCode, Code and
// a redacted Description and unwraps to the cause; its message is at most
// 512 bytes and never contains a token.
//
// # Observability
//
// [Options.OnEvent] receives an [Event] for each refresh, failure,
// re-authentication, persist failure and later success, adoption and
// refresh-token expiry
// warning ([Options.RefreshTokenLead], 24 h before refresh_token_expires_in
// runs out): kinds, durations and expiries, never a secret. The same events
// go to [Options.Logger] (log/slog, discarded by default) through
// redacting LogValuers; [Cache] itself logs and prints without secrets.
package refresh
