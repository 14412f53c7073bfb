package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// Upstream is a grant that produces tokens: refresh token, client
// credentials, token exchange, ... The client package implements it; tests
// and small programs can use [UpstreamFunc].
//
// Token is called with the freshest full token the cache knows (refresh
// token included; its access token may be empty, when it was loaded from a
// reduced stored set, see [Persister]), or nil when it has none. It must
// honour ctx, return a new token (a token without a refresh token keeps the
// current one, as RFC 6749 section 6 allows) and report failures as
// *oauth2.RetrieveError, as a value with an OAuthError() method, as one of
// this package's sentinels, or as a net error, so the cache can classify
// them. The cache never calls Token concurrently for one key, nor while an
// [Cache.Exchange] function runs.
//
// When the server asked to wait before the next request (an HTTP
// Retry-After on a 429 or 503), report it with an error that has a method
// RetryAfterHint() time.Duration, anywhere in the chain [errors.As] walks
// (wrapped with %w, joined, or the cause of an [*Error]); the client
// package's *client.RateLimitError and *client.EndpointError have it. The
// cache then makes its next attempt no earlier than that delay, capped at
// [Options.MaxRetryAfter] (see the package comment, "Failures").
type Upstream interface {
	Token(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error)
}

// UpstreamFunc adapts a function to [Upstream].
type UpstreamFunc func(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error)

// Token calls f(ctx, current).
func (f UpstreamFunc) Token(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error) {
	return f(ctx, current)
}

// Persister stores the full token (including the refresh token) for a key.
// store.Store satisfies it through a small adapter in client.
//
// The cache calls the Persister itself, under the [Locker]'s lock when
// there is one: code that holds that lock for a key must not call the
// cache for the same key (see [Locker]).
//
// When a token set cannot be saved, the cache saves reduced sets of it
// (package comment, "Persistence before use"): without extra members, or
// only the refresh token (with its expiry in the extras) with an empty
// AccessToken and an Expiry long past (the Unix epoch). A Persister must
// store and load such a set like any other; the cache never serves its
// empty access token but refreshes with its refresh token. A token with
// neither an access token nor a refresh token loads as nothing stored.
type Persister interface {
	// Load returns the stored token, or (nil, nil) when nothing is stored.
	// An error means the store could not be read: the cache then presents
	// no refresh token it cannot prove is the newest (another process may
	// have rotated it), so the refresh fails and is retried.
	Load(ctx context.Context, key string) (*oauth2.Token, error)
	// Save stores tok durably and reads it back; nil means it is stored.
	// It replaces the stored token as a whole or not at all.
	Save(ctx context.Context, key string, tok *oauth2.Token) error
	// Delete removes the stored token; nil when it is already absent.
	Delete(ctx context.Context, key string) error
}

// Locker is optionally implemented by a [Persister]: a cross-process lock
// per key (an OS file lock in store). When present, every refresh runs under
// it: lock, reload, adopt or refresh, save (falling back to reduced sets),
// publish, unlock; so do save retries, the final save of [Cache.Close],
// [Cache.Set], [Cache.Clear] and [Cache.Exchange] (whose function runs
// under it).
//
// The cache takes Lock(key) itself, and the lock is not reentrant: code that
// holds Lock(key) (to edit the stored entry, say) must not call the cache
// for the same key ([Cache.Token] may need to refresh, [Cache.Set],
// [Cache.Clear]) until it has unlocked. Such a call waits for the lock
// until [Options.LockTimeout] (or the Locker's own bound, or ctx) ends it
// and then fails. Lock must honour ctx.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func() error, err error)
}

// registry holds the one core per key in this process, so that two users
// of one credential never refresh the same refresh token independently.
var registry = struct {
	mu sync.Mutex // guards m and every core's refs and closing
	m  map[string]*core
}{m: map[string]*core{}}

// New returns the token cache for key, which identifies the credential
// (usually store.Key.String()). up produces new tokens.
//
// There is one cache per key per process: while a cache for key is open, New
// returns another handle to the same cache, so that two clients for one
// profile never refresh the same refresh token independently. The shared
// cache keeps the Upstream, Logger and OnEvent of the New call that created
// it: those of a later New for the same key are not used. Its other options
// must match: a later New whose Persister (when its type is comparable),
// durations, fractions or flags resolve to other values than the open
// cache's fails with an error matching [ErrInvalidConfig] that names the
// first option that differs. Each handle must be closed; the cache stops
// when the last handle is closed.
//
// Most users will use client.New instead.
func New(key string, up Upstream, optFns ...func(*Options)) (*Cache, error) {
	if key == "" {
		return nil, fmt.Errorf("refresh: %w: empty key", ErrInvalidConfig)
	}
	if up == nil {
		return nil, fmt.Errorf("refresh: %w: nil Upstream", ErrInvalidConfig)
	}
	var o Options
	for _, fn := range optFns {
		if fn != nil {
			fn(&o)
		}
	}
	o = o.resolve()
	for {
		registry.mu.Lock()
		c := registry.m[key]
		if c == nil {
			c = newCore(key, up, o)
			c.refs = 1
			registry.m[key] = c
			registry.mu.Unlock()
			return &Cache{c: c}, nil
		}
		if c.closing {
			// The last handle is being closed and its refresh may still be in
			// flight: wait, so two refreshers for one key never overlap.
			gone := c.gone
			registry.mu.Unlock()
			<-gone
			continue
		}
		if err := conflict(c.o, o); err != nil {
			registry.mu.Unlock()
			return nil, err
		}
		c.refs++
		registry.mu.Unlock()
		return &Cache{c: c}, nil
	}
}

// Cache is a handle to the token cache of one key. It is safe for
// concurrent use by multiple goroutines.
type Cache struct {
	c      *core
	closed atomic.Bool
}

// Token returns a valid access token.
//
// While the token is fresh this is one atomic load, with no lock and no
// allocation. The same *oauth2.Token pointer is returned until the token
// changes, so callers may cache derived values (the Authorization header) by
// pointer. The returned token has an empty RefreshToken (the refresh token
// never leaves the cache) and a defined, finite Expiry; it must not be
// modified.
//
// Its extra members (Extra) are those of the token the Upstream (or Set,
// or the Persister) gave, without the refresh token and device_secret: the
// members this package knows by name (id_token, scope, issued_token_type,
// "tokenward.refresh_token_expiry", the refresh token's expiry) and, when
// that token lists its members under "tokenward.extra_names" (a []string),
// every listed one, such as a provider's instance_url. x/oauth2 offers no
// way to list a token's members, so an unlisted member of a token from
// x/oauth2 is not carried over. The public token lists its own members
// the same way.
//
// Token waits only when there is no usable token: on the first call, after
// [Cache.Invalidate], or inside the mandatory window before expiry. A waiting
// caller returns ctx.Err() as soon as ctx ends, while the refresh goes on for
// the others.
func (h *Cache) Token(ctx context.Context) (*oauth2.Token, error) {
	if s := h.c.cur.Load(); s != nil && s.fresh && !h.closed.Load() {
		return s.pub, nil
	}
	if h.closed.Load() {
		return nil, ErrClosed
	}
	return h.c.token(ctx)
}

// Invalidate drops tok if, and only if, it is the token the cache currently
// hands out (compare-and-swap on the pointer), so that a 401 on an old token
// cannot discard a newer one. It reports whether tok was dropped. The next
// [Cache.Token] refreshes (under the cross-process protocol, so a token
// another process stored is adopted instead). Invalidate is
// [Cache.Rejected] by a resource server whose origin is not known.
func (h *Cache) Invalidate(tok *oauth2.Token) bool {
	return h.Rejected("", tok)
}

// Rejected reports that the resource server at origin (scheme://host:port,
// as the caller names it; "" when unknown) rejected tok, and drops tok as
// [Cache.Invalidate] does, unless the rejection looks like a token for the
// wrong audience rather than a revoked one. It reports whether tok was
// dropped. The transport package calls it on a 401 invalid_token.
//
// A resource server that rejects every token must not turn every request
// into a refresh. So a token that replaced a rejected one (by a refresh of
// this process, or adopted from another process after the rejection), and
// that origin has not accepted (see [Cache.Accepted]), is not dropped when
// origin rejects it too: [EventTokenRejected] reports [ErrTokenRejected]
// (the likely cause is an audience or resource mismatch), and the next
// refresh forced by origin waits for a jittered exponential backoff and for
// twice as many of its rejections as the previous one. Refreshes forced by
// rejections thus grow with the logarithm of the rejected requests. The
// limit is per origin: an API that accepts the token does not let another
// that rejects it drive the token endpoint. The rejection of any other
// token (from a scheduled refresh, a login, or one origin had accepted)
// drops it at once and ends origin's limit.
func (h *Cache) Rejected(origin string, tok *oauth2.Token) bool {
	if tok == nil || h.closed.Load() {
		return false
	}
	return h.c.invalidate(origin, tok)
}

// Accepted reports that the resource server at origin accepted tok (it
// answered a request that carried tok with anything but a rejection or a
// server error), so that a later rejection of tok by origin is taken as a
// revocation and replaces it at once (see [Cache.Rejected]). The
// transport package calls it for every such answer; it is one atomic load
// and a short scan when there is nothing new to record.
func (h *Cache) Accepted(origin string, tok *oauth2.Token) {
	if tok != nil {
		h.c.accepted(origin, tok)
	}
}

// Set publishes a token obtained outside the cache (a login): it is
// validated, given a defined expiry, saved to the Persister and read back,
// then published. If saving fails the token is still used and the returned
// error matches [ErrPersistFailed]; a reduced set holding its refresh token
// may have been saved instead, and the save is retried on the next access,
// in the background. Any other failure (ctx ended, store lock) publishes
// nothing and leaves the cache's refresh schedule and errors untouched.
func (h *Cache) Set(ctx context.Context, tok *oauth2.Token) error {
	if h.closed.Load() {
		return ErrClosed
	}
	return h.c.set(ctx, tok)
}

// Clear forgets the token (a logout): it deletes the stored token from the
// Persister, under the store lock, and drops the one in memory, so Token
// hands it out no more. Until [Cache.Set] publishes a new token (or another
// process stores one), Token reports what the Upstream says without a token
// (for a refresh grant, [ErrReauthRequired]). The token in memory is dropped
// even when deleting the stored one fails, which is reported; the cache
// then never reloads the token it could not delete and retries the delete
// before its next refresh, until a new token is saved (or another process
// stores a different one).
func (h *Cache) Clear(ctx context.Context) error {
	if h.closed.Load() {
		return ErrClosed
	}
	return h.c.clear(ctx)
}

// Exchange runs fn with the cache's full token (refresh token included)
// under the same exclusivity as a refresh, so that a caller can use the
// refresh token for another grant, typically minting an access token for
// a further resource (RFC 8707) from the login's one refresh token,
// without another process or goroutine presenting the same refresh token
// at the same time.
//
// Exchange waits for the operation in flight (a refresh, a save retry,
// [Cache.Set], [Cache.Clear], another Exchange) and joins none: it makes
// its own operation the one in flight and takes the store lock ([Locker];
// the wait is bounded by [Options.LockTimeout] and ctx). Then fn gets the
// freshest full token, chosen as for a refresh: the one in memory when its
// save failed (it is newer than the store's, whose refresh token is spent),
// else the stored one when another process replaced ours (adopted when it
// is fresh), else ours. If the store cannot be read, fn is not called (the
// refresh token in memory may have been rotated by another process) and
// the error is returned. With no token, or none with a refresh token
// (never logged in, cleared, or a dead grant), fn is not called and the
// error matches [ErrReauthRequired].
//
// fn runs under a context that keeps ctx's values but not its
// cancellation, bounded by [Options.RefreshTimeout]: once it has started
// it runs to its end, so that a caller giving up does not lose a refresh
// token the server has just rotated. fn gets a copy; it must not keep the
// refresh token, nor use this cache, directly or through another cache
// whose refresh calls Exchange on this one (the operation in flight and
// the store lock are held: that waits until the timeouts end it).
//
// fn's result:
//   - a non-nil error: returned, classified like an Upstream's (a value
//     matching [ErrReauthRequired], such as invalid_grant, is handled as a
//     refresh's: the dead stored token is deleted and the cache moves to
//     re-authentication, [EventReauthRequired]);
//   - nil: nothing changes;
//   - a token with a new access token: it becomes the cache's full token,
//     validated like a refresh result (a token without a refresh token
//     keeps the current one), saved and read back before Exchange returns,
//     then published ([EventRefreshed]); one whose access token arrived
//     already expired is saved and published all the same (its refresh
//     token may be a rotated one) but never served, and Exchange returns
//     an error matching [ErrTemporarilyUnavailable];
//   - a token with no access token, or the current one: only its refresh
//     token (and that token's expiry) is taken, if it differs, next to the
//     access token in use; saved the same way.
//
// If the save fails, the new token is kept in memory (the refresh token fn
// presented may be spent), reported once as [ErrPersistFailed] through
// [Options.OnEvent] and the logger, and retried like any unsaved token;
// Exchange then returns an error matching ErrPersistFailed.
func (h *Cache) Exchange(ctx context.Context, fn func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error)) error {
	if h.closed.Load() {
		return ErrClosed
	}
	if fn == nil {
		return errors.New("refresh: Exchange: nil function")
	}
	return h.c.exchange(ctx, fn)
}

// Key returns the key the cache was created for.
func (h *Cache) Key() string { return h.c.key }

// Close releases this handle. Closing the last handle of a key stops the
// idle timer and waits for a refresh in flight to finish (it is bounded by
// [Options.LockTimeout] plus [Options.RefreshTimeout]) so that the new
// token is saved. If the token's save failed and its refresh token is
// stored nowhere (not even in a reduced set), Close then makes one final
// save attempt under the store lock, bounded the same way (so Close takes
// at most twice that bound), so that a program that exits right away does
// not lose the rotated refresh token;
// its events ([EventPersisted]) are emitted before Close returns, and if it
// fails the loss is logged at error level. Close is idempotent; a closed
// handle's methods return [ErrClosed].
func (h *Cache) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	c := h.c
	registry.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last {
		c.closing = true
	}
	registry.mu.Unlock()
	if !last {
		return nil
	}
	c.shutdown()
	registry.mu.Lock()
	if registry.m[c.key] == c {
		delete(registry.m, c.key)
	}
	registry.mu.Unlock()
	close(c.gone)
	return nil
}

// String describes the cache without any secret.
func (h *Cache) String() string {
	s := h.c.cur.Load()
	if s == nil {
		return "refresh.Cache{key=" + h.c.key + ", no token}"
	}
	return "refresh.Cache{key=" + h.c.key + ", expiry=" + s.expiry.UTC().Format(time.RFC3339) + "}"
}

// GoString is String, so %#v prints no secret either.
func (h *Cache) GoString() string { return h.String() }

// LogValue implements [slog.LogValuer]: the key, the token's expiry and
// state, never a token.
func (h *Cache) LogValue() slog.Value {
	s := h.c.cur.Load()
	if s == nil {
		return slog.GroupValue(slog.String("key", h.c.key), slog.Bool("token", false))
	}
	return slog.GroupValue(slog.String("key", h.c.key), slog.Any("token", s))
}

// TokenSource adapts src (usually a [*Cache]) to [oauth2.TokenSource] for
// code written for golang.org/x/oauth2. oauth2.TokenSource has no context,
// so each call uses context.Background(): it can wait up to
// [Options.LockTimeout] plus [Options.RefreshTimeout] when a refresh is
// needed. Errors keep matching this package's sentinels and also unwrap to
// an *oauth2.RetrieveError when they carry an OAuth error code.
func TokenSource(src interface {
	Token(context.Context) (*oauth2.Token, error)
}) oauth2.TokenSource {
	return tokenSource{src: src}
}

type tokenSource struct {
	src interface {
		Token(context.Context) (*oauth2.Token, error)
	}
}

func (ts tokenSource) Token() (*oauth2.Token, error) {
	t, err := ts.src.Token(context.Background())
	if err != nil {
		return nil, toOAuth2Error(err)
	}
	return t, nil
}

// FromTokenSource adapts an [oauth2.TokenSource] to [Upstream], so existing
// x/oauth2 grants can feed a [Cache]. The source keeps its own refresh token
// (the cache's current token is not passed to it), and oauth2.TokenSource
// cannot be cancelled: the call runs on its own goroutine and Token returns
// when ctx ends. Errors are classified into this package's taxonomy
// (*oauth2.RetrieveError codes, net errors). For rotating refresh tokens a
// native Upstream that uses the current token is better.
func FromTokenSource(ts oauth2.TokenSource) Upstream {
	if a, ok := ts.(tokenSource); ok {
		// Undo TokenSource instead of stacking adapters.
		return UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			return a.src.Token(ctx)
		})
	}
	return UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		type result struct {
			t   *oauth2.Token
			err error
		}
		ch := make(chan result, 1)
		go func() {
			t, err := ts.Token()
			ch <- result{t, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				return nil, classifyAs(r.err, opRefresh.failure(), nil)
			}
			return r.t, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}
