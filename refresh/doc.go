// Package refresh is tokenward's token cache: lock-free reads, early
// background refresh, one refresh at a time across goroutines and
// processes, and persistence before use. Most programs get a [Cache]
// through client.New; use this package directly to put the cache in front
// of your own grant ([Upstream]) or an existing [oauth2.TokenSource].
//
//	c, err := refresh.New(key, upstream, func(o *refresh.Options) {
//		o.Persister = myStore // optional; a Locker too for cross-process safety
//		o.Logger = logger
//	})
//	defer c.Close()
//	tok, err := c.Token(ctx) // cheap: call it for every request
//
// There is one cache per key per process; [New] for an open key returns
// another handle to it (and fails when asked for other options).
//
// # Reads
//
// [Cache.Token] of a fresh token is one atomic load: no lock, no clock
// read, no allocation, and the same *oauth2.Token pointer until the token
// changes. The returned token never carries the refresh token, neither as
// RefreshToken nor among its extra members (nor OpenID Native SSO's
// device_secret); the refresh token goes only to the Upstream, the
// Persister and [Cache.Exchange] functions.
//
// # Timing
//
// A token's lifetime L runs from when the cache received it to its expiry:
// the token's Expiry, else the exp claim of a JWT access token (a hint, not
// verified), else [Options.DefaultLifetime], cut to [Options.MaxLifetime].
// A token is used for as long as its server says and never longer, however
// short; one that arrives already expired is never served (its refresh
// counts as failed and backs off, so it cannot cause a loop).
//
//   - The mandatory window W = min(MandatoryWindow, L/10) before expiry:
//     only inside it (or after expiry, after Invalidate, before the first
//     token) does a caller wait for a refresh.
//   - The advisory point, expiry - m, with the early margin
//     m = clamp((1-AdvisoryFraction)·L, 2W, MaxAdvisoryMargin) times a random
//     factor in [1-Jitter, 1+Jitter]. With the defaults a 12 s token
//     refreshes between 75 % and 85 % of its life, a 1 h token 3m45s to
//     6m15s before expiry.
//
// From the advisory point on, the next Token call, or in an idle process a
// timer ([Options.DisableIdleRefresh]), starts one background refresh and
// the current token is served meanwhile. The timer also looks at the wall
// clock at least every 10 s, so a machine that was suspended notices expiry
// soon after it resumes.
//
// # One refresh at a time
//
// At most one refresh (or save retry, [Cache.Set], [Cache.Clear],
// [Cache.Exchange]) per key runs in a process; Token's callers that must
// wait join it. A refresh runs detached from the caller that started it,
// bounded by [Options.LockTimeout] for the store lock plus
// [Options.RefreshTimeout] for the work; a waiting caller returns ctx.Err()
// as soon as its own ctx ends.
//
// When the [Persister] is also a [Locker], every refresh takes the lock for
// the key and reloads the stored token. If another process refreshed
// already, its token is adopted without calling the [Upstream]
// ([EventAdopted]); otherwise the freshest refresh token known is presented,
// the new token is saved, published, and only then is the lock released. If
// the store cannot be read under the lock, the refresh fails rather than
// present a refresh token another process may have rotated (a reuse revokes
// the whole token family); the valid token is still served. A stored token
// another process deleted (logout, dead grant) is not resurrected.
//
// # Persistence before use
//
// A new token is saved, and read back by the Persister, before it is
// published or returned. If the full set cannot be saved, smaller sets are
// saved under the same lock (without extra members, then the refresh token
// alone with an empty access token and an Expiry long past), so the store
// never keeps a refresh token the server has consumed; a set without an
// access token is never served, only refreshed with. If nothing can be
// saved, the new token is used from memory, [ErrPersistFailed] is reported
// once ([EventPersistFailed]), the older stored token is never read over it,
// and the save is retried in the background with backoff ([EventPersisted]
// when it succeeds), never over a logout another process did meanwhile.
// Closing the last handle makes one final attempt for a refresh token
// stored nowhere. [Cache.Set] and [Cache.Exchange] follow the same rules.
//
// # Failures
//
// While the token is valid, a failed refresh changes nothing for callers:
// the old token is served and the refresh retried with jittered exponential
// backoff ([Options.RetryBackoffMin] to [Options.RetryBackoffMax]). When
// the failure's error carries the server's Retry-After (a RetryAfterHint()
// time.Duration method, see [Upstream]), the next attempt waits at least
// that long, capped at [Options.MaxRetryAfter] (default 5 min), so the
// cache does not hammer a server that asked it to wait. After expiry a
// caller waits for one attempt; during backoff, or the server's delay, it
// gets the last error at once rather than being held for the delay. An
// expired or invalidated token is never returned.
//
// An answer the cache refuses (no access token, a token type other than
// Bearer) that carries a new refresh token still gives its refresh token
// to the cache, saved next to the access token in use: the server may have
// rotated, and the retry presents the new refresh token.
//
// invalid_grant ends the retries: the dead token is deleted from the store,
// its access token is served until the mandatory window, then Token returns
// [ErrReauthRequired] ([EventReauthRequired] is emitted at once).
//
// A refresh that fails in transit after the request may have reached the
// server (timeout, reset; not DNS or dial errors) may have lost a rotated
// refresh token. The cache then reloads the store and adopts a fresh token
// another process stored; it retries blindly with the same refresh token
// at most once, and only within [Options.RotationGrace] (default: never).
// An invalid_grant that follows also matches [ErrPossibleRotationLoss].
// Recommended server setting: a refresh-token reuse grace of 10-30 s.
//
// # Errors
//
// Upstream errors are classified in this order: an [*Error] is kept; an
// error that already matches one of this package's sentinels keeps its
// kind; an *oauth2.RetrieveError, or a value with an OAuthError() (status
// int, code, description string) method, is mapped by its code and HTTP
// status (invalid_grant, invalid_token: [ErrReauthRequired];
// invalid_client, unauthorized_client, unsupported_grant_type,
// invalid_scope, invalid_target, invalid_request, 401/403: [ErrClientRejected];
// temporarily_unavailable, server_error, slow_down, 5xx, 408, 429:
// [ErrTemporarilyUnavailable]); net errors and timeouts are [ErrNetwork].
// Store and lock failures are [*Error] values too ("refresh: loading the
// stored token: ..."). Messages start with "refresh: ", name what failed
// once (a cause that already carries a sentinel's text does not get it
// twice), are at most 512 bytes and never contain a token. A caller whose
// own ctx ends gets ctx.Err().
//
// # Observability
//
// [Options.OnEvent] receives an [Event] for each refresh, failure,
// re-authentication, save failure and later save, adoption, rejected token
// and refresh-token expiry warning ([Options.RefreshTokenLead] before
// refresh_token_expires_in runs out). The same events go to
// [Options.Logger] (discarded by default). Neither ever carries a secret,
// and [Cache] prints and logs without one.
package refresh
