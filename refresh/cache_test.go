package refresh

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// The public API of a Cache: reads, Invalidate, the registry, the
// x/oauth2 adapters, Set and Close.

func TestSamePointerNoRefreshTokenZeroAllocs(t *testing.T) {
	// Not parallel: testing.AllocsPerRun forbids it.
	st := newMemStore()
	c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}, nil
	}), func(o *Options) { o.Persister = st })
	defer c.Close()
	ctx := t.Context()
	t1, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := c.Token(ctx)
	if t1 != t2 {
		t.Fatalf("Token returned %p then %p, want the same pointer", t1, t2)
	}
	if t1.RefreshToken != "" {
		t.Fatalf("the public token carries the refresh token")
	}
	if got := st.get(c.Key()); got.RefreshToken != "r" {
		t.Fatalf("the store lacks the refresh token")
	}
	if n := testing.AllocsPerRun(1000, func() { c.Token(ctx) }); n != 0 {
		t.Fatalf("Token allocates %v times per call, want 0", n)
	}
}

func TestInvalidateCAS(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour}.start(t)
		c := f.c
		t0, err := c.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c.Invalidate(&oauth2.Token{AccessToken: t0.AccessToken}) {
			t.Fatal("Invalidate of a different pointer with the same value succeeded")
		}
		if c.Invalidate(nil) {
			t.Fatal("Invalidate(nil) succeeded")
		}
		if !c.Invalidate(t0) {
			t.Fatal("Invalidate of the current token failed")
		}
		if c.Invalidate(t0) {
			t.Fatal("second Invalidate of the same token succeeded")
		}
		t1, err := c.Token(t.Context())
		if err != nil || t1 == t0 || t1.AccessToken != "at-1" {
			t.Fatalf("after Invalidate: %v, %v; want a new token at-1", t1, err)
		}
		if c.Invalidate(t0) {
			t.Fatal("Invalidate of the old token dropped the new one")
		}
		if t2, _ := c.Token(t.Context()); t2 != t1 {
			t.Fatal("the new token changed after a stale Invalidate")
		}
	})
}

func TestRegistrySharesOneCachePerKey(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	var calls1, calls2 int
	var mu sync.Mutex
	up := func(n *int) Upstream {
		return UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			mu.Lock()
			*n++
			mu.Unlock()
			return &oauth2.Token{AccessToken: "a", Expiry: time.Now().Add(time.Hour)}, nil
		})
	}
	open := func(up Upstream, optFns ...func(*Options)) *Cache {
		t.Helper()
		c, err := New(key, up, optFns...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := open(up(&calls1))
	// Another Upstream, Logger and OnEvent: a handle's own, not a conflict
	// (options_test.go has the options that conflict).
	c2 := open(up(&calls2), func(o *Options) { o.OnEvent = func(Event) {}; o.Logger = slog.New(slog.DiscardHandler) })
	if c1.c != c2.c {
		t.Fatal("two New calls for one key built two caches")
	}
	t1, err := c1.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := c2.Token(t.Context())
	if t1 != t2 || calls1 != 1 || calls2 != 0 {
		t.Fatalf("tokens %p %p, upstream calls %d %d; want one shared token from the first Upstream", t1, t2, calls1, calls2)
	}
	c1.Close()
	c1.Close() // idempotent
	if _, err := c1.Token(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed handle: %v, want ErrClosed", err)
	}
	if t3, err := c2.Token(t.Context()); err != nil || t3 != t1 {
		t.Fatalf("the other handle stopped working: %v", err)
	}
	c2.Close()
	c3 := open(up(&calls2), func(o *Options) { o.DefaultLifetime = time.Minute }) // a new cache: any options
	defer c3.Close()
	if c3.c == c1.c {
		t.Fatal("a closed cache was reused")
	}
	if c3.c.o.DefaultLifetime != time.Minute {
		t.Fatal("a new cache for a key whose last handle was closed kept the old options")
	}
	if _, err := New("", up(&calls1)); err == nil {
		t.Fatal("New accepted an empty key")
	}
	if _, err := New(key, nil); err == nil {
		t.Fatal("New accepted a nil Upstream")
	}
}

func TestAdapters(t *testing.T) {
	t.Parallel()
	t.Run("TokenSource", func(t *testing.T) {
		t.Parallel()
		c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "a", Expiry: time.Now().Add(time.Hour)}, nil
		}))
		defer c.Close()
		ts := TokenSource(c)
		t1, err := ts.Token()
		if err != nil || t1.AccessToken != "a" {
			t.Fatalf("Token() = %v, %v", t1, err)
		}
		t2, _ := c.Token(t.Context())
		if t1 != t2 {
			t.Fatal("the adapter returned a different pointer")
		}
		// An oauth2.Transport over the adapter sets the header.
		req, _ := http.NewRequest("GET", "https://api.example/", nil)
		var got string
		rt := &oauth2.Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r.Header.Get("Authorization")
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		})}
		if _, err := rt.RoundTrip(req); err != nil || got != "Bearer a" {
			t.Fatalf("Authorization = %q, %v", got, err)
		}
	})
	t.Run("TokenSource errors", func(t *testing.T) {
		t.Parallel()
		c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return nil, &wireErr{400, "invalid_grant", "gone"}
		}))
		defer c.Close()
		_, err := TokenSource(c).Token()
		var re *oauth2.RetrieveError
		if !errors.Is(err, ErrReauthRequired) || !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("err = %v; want ErrReauthRequired and an *oauth2.RetrieveError with invalid_grant", err)
		}
		if !strings.HasPrefix(err.Error(), "refresh: ") {
			t.Fatalf("message %q", err)
		}
	})
	t.Run("FromTokenSource errors", func(t *testing.T) {
		t.Parallel()
		up := FromTokenSource(tsFunc(func() (*oauth2.Token, error) { return nil, retrieveErr(401, "invalid_client", "") }))
		_, err := up.Token(t.Context(), nil)
		var re *oauth2.RetrieveError
		if !errors.Is(err, ErrClientRejected) || !errors.As(err, &re) {
			t.Fatalf("err = %v; want ErrClientRejected wrapping the RetrieveError", err)
		}
	})
	t.Run("FromTokenSource honours ctx", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		defer close(block)
		up := FromTokenSource(tsFunc(func() (*oauth2.Token, error) { <-block; return nil, errors.New("late") }))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := up.Token(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("FromTokenSource feeds a cache", func(t *testing.T) {
		t.Parallel()
		src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "s", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)})
		c := mustNew(t, FromTokenSource(src))
		defer c.Close()
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "s" || tok.RefreshToken != "" {
			t.Fatalf("Token = %+v, %v", tok, err)
		}
		// Round trip: FromTokenSource(TokenSource(c)) unwraps to c.
		back := FromTokenSource(TokenSource(c))
		if t2, err := back.Token(t.Context(), nil); err != nil || t2 != tok {
			t.Fatalf("round trip = %v, %v", t2, err)
		}
	})
}

// Set publishes a login's token after saving it.
func TestSet(t *testing.T) {
	t.Parallel()
	f := scene{empty: true, upstream: func(*rotatingAS) Upstream {
		return UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return nil, errors.New("not called")
		})
	}}.start(t)
	st, c, evs := f.st, f.c, f.ev
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if st.get(c.Key()).RefreshToken != "login-rt" {
		t.Fatal("Set did not save")
	}
	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken != "login-at" || tok.RefreshToken != "" {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "x", TokenType: "DPoP"}); !errors.Is(err, ErrUnsupportedTokenType) {
		t.Fatalf("Set(DPoP) = %v", err)
	}
	st.failSaves = 1
	err = c.Set(t.Context(), &oauth2.Token{AccessToken: "login2", RefreshToken: "rt2", Expiry: time.Now().Add(time.Hour)})
	if !errors.Is(err, ErrPersistFailed) {
		t.Fatalf("Set with a failing store = %v, want ErrPersistFailed", err)
	}
	if tok, _ := c.Token(t.Context()); tok.AccessToken != "login2" {
		t.Fatalf("after a failed Set: token %q; want login2 used", tok.AccessToken)
	}
	evs.wait(t, EventPersisted, 1) // the next access retries the save in the background
	if got := st.get(c.Key()).RefreshToken; got != "rt2" {
		t.Fatalf("after a failed Set: stored %q; want rt2 saved on the next access", got)
	}
}

// A failed Set is its caller's error only: no backoff, no
// lastErr, no refresh-failed event for Token's callers.
func TestFailedSetLeavesRefreshAlone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: -time.Second, persister: func(m *memStore) Persister { return ctxStore{m} }}.start(t)
		c, evs := f.c, f.ev
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // the login's context ended just as it finished
		if err := c.Set(ctx, &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a cancelled ctx = %v, want context.Canceled", err)
		}
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token after the failed Set = %v, %v; want a refresh to at-1", tok, err)
		}
		if n := evs.count(EventRefreshFailed); n != 0 {
			t.Fatalf("events %v: a failed Set reported a refresh failure", evs.all())
		}
	})
}

// Close returns only after the operation in flight has delivered its
// events: no OnEvent call happens after Close (a finished flight used to
// clear the in-flight marker before its events were emitted, so Close did
// not wait for them).
func TestCloseWaitsForEventDelivery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		inHook, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		c, err := New(testKey(t), UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "at", Expiry: time.Now().Add(time.Hour)}, nil
		}), func(o *Options) {
			o.OnEvent = func(e Event) {
				if e.Kind == EventRefreshed {
					once.Do(func() { close(inHook) })
					<-release
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		go c.Token(context.Background())
		<-inHook
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while an event was still being delivered")
		default:
		}
		close(release)
		synctest.Wait()
		select {
		case <-closed:
		default:
			t.Fatal("Close did not return after the event was delivered")
		}
	})
}
