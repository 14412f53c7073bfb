package refresh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/internal/twerr"
)

// wireErr stands in for internal/oauthwire.Error: anything with OAuthError().
type wireErr struct {
	status      int
	code, descr string
}

func (e *wireErr) Error() string { return "oauthwire: " + e.code }
func (e *wireErr) OAuthError() (int, string, string) {
	return e.status, e.code, e.descr
}

func retrieveErr(status int, code, body string) *oauth2.RetrieveError {
	return &oauth2.RetrieveError{
		Response:  &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status))},
		ErrorCode: code, Body: []byte(body),
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	mine := &Error{Code: "invalid_grant", kind: ErrReauthRequired}
	for _, tc := range []struct {
		name      string
		in        error
		want      error // sentinel, or nil for none
		code      string
		status    int
		temporary bool
		retrieve  bool // errors.As *oauth2.RetrieveError
	}{
		{"invalid_grant", retrieveErr(400, "invalid_grant", ""), ErrReauthRequired, "invalid_grant", 400, false, true},
		{"invalid_token (refresh token)", retrieveErr(401, "invalid_token", ""), ErrReauthRequired, "invalid_token", 401, false, true},
		{"invalid_client", retrieveErr(401, "invalid_client", ""), ErrClientRejected, "invalid_client", 401, false, true},
		{"unauthorized_client", retrieveErr(400, "unauthorized_client", ""), ErrClientRejected, "unauthorized_client", 400, false, true},
		{"unsupported_grant_type", retrieveErr(400, "unsupported_grant_type", ""), ErrClientRejected, "unsupported_grant_type", 400, false, true},
		{"401 without a code", retrieveErr(401, "", "nope"), ErrClientRejected, "", 401, false, true},
		{"temporarily_unavailable", retrieveErr(400, "temporarily_unavailable", ""), ErrTemporarilyUnavailable, "temporarily_unavailable", 400, true, true},
		{"503 html page", retrieveErr(503, "", "<html>"+strings.Repeat("x", 1<<20)+"</html>"), ErrTemporarilyUnavailable, "", 503, true, true},
		{"429", retrieveErr(429, "", ""), ErrTemporarilyUnavailable, "", 429, true, true},
		{"code wins over status", retrieveErr(503, "invalid_grant", ""), ErrReauthRequired, "invalid_grant", 503, false, true},
		{"OAuthError() carrier", &wireErr{400, "invalid_grant", "expired"}, ErrReauthRequired, "invalid_grant", 400, false, false},
		{"OAuthError() 502", fmt.Errorf("wrapped: %w", &wireErr{502, "", ""}), ErrTemporarilyUnavailable, "", 502, true, false},
		{"net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, ErrNetwork, "", 0, true, false},
		{"url.Error", &url.Error{Op: "Post", URL: "https://as.example/token", Err: errors.New("boom")}, ErrNetwork, "", 0, true, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ErrNetwork, "", 0, true, false},
		{"sentinel kept", fmt.Errorf("grant: %w", ErrReauthRequired), ErrReauthRequired, "", 0, false, false},
		{"twerr unsupported token type", twerr.ErrUnsupportedTokenType, ErrUnsupportedTokenType, "", 0, false, false},
		{"unknown", errors.New("something odd"), nil, "", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tc.in)
			for _, k := range kinds {
				if errors.Is(got, k) != (k == tc.want) {
					t.Errorf("errors.Is(%v) = %v, want %v", k, errors.Is(got, k), k == tc.want)
				}
			}
			var e *Error
			if !errors.As(got, &e) {
				t.Fatalf("errors.As(*Error) = false for %T", got)
			}
			if e.Code != tc.code || e.StatusCode != tc.status || e.Temporary() != tc.temporary {
				t.Errorf("Code %q Status %d Temporary %v, want %q %d %v", e.Code, e.StatusCode, e.Temporary(), tc.code, tc.status, tc.temporary)
			}
			if !errors.Is(got, tc.in) {
				t.Errorf("the cause is not reachable with errors.Is")
			}
			var re *oauth2.RetrieveError
			if errors.As(got, &re) != tc.retrieve {
				t.Errorf("errors.As(*oauth2.RetrieveError) = %v, want %v", !tc.retrieve, tc.retrieve)
			}
			msg := got.Error()
			if len(msg) > maxErrorLen || !strings.HasPrefix(msg, "refresh: ") {
				t.Errorf("message (%d bytes) = %.80q..., want <= %d bytes starting with refresh:", len(msg), msg, maxErrorLen)
			}
		})
	}
	t.Run("an *Error is kept", func(t *testing.T) {
		if got := classify(mine); got != mine {
			t.Fatalf("classify(*Error) = %v, want the same value", got)
		}
	})
}

func TestUnsupportedTokenType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ string
		ok  bool
	}{{"Bearer", true}, {"bearer", true}, {"BEARER", true}, {"", true}, {"DPoP", false}, {"mac", false}, {"N_A", false}} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
				return &oauth2.Token{AccessToken: "a", TokenType: tc.typ, Expiry: time.Now().Add(time.Hour)}, nil
			}))
			defer c.Close()
			tok, err := c.Token(t.Context())
			if tc.ok && (err != nil || tok.Type() != "Bearer") {
				t.Fatalf("Token = %v, %v; want a Bearer token", tok, err)
			}
			if !tc.ok && (!errors.Is(err, ErrUnsupportedTokenType) || !errors.Is(err, twerr.ErrUnsupportedTokenType)) {
				t.Fatalf("Token error = %v, want ErrUnsupportedTokenType", err)
			}
		})
	}
}

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
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(time.Hour)))
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
		defer c.Close()
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
	c1 := mustNewKey(t, key, up(&calls1))
	c2 := mustNewKey(t, key, up(&calls2), func(o *Options) { o.DefaultLifetime = time.Minute })
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
	c3 := mustNewKey(t, key, up(&calls2))
	defer c3.Close()
	if c3.c == c1.c {
		t.Fatal("a closed cache was reused")
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

type tsFunc func() (*oauth2.Token, error)

func (f tsFunc) Token() (*oauth2.Token, error) { return f() }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// While the old token is valid, failed background refreshes change nothing
// for callers and are retried with jittered backoff.
func TestBackgroundFailureKeepsServingWithBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		var attempts []time.Time
		as.fail = func(n int) error {
			attempts = append(attempts, time.Now())
			if n <= 4 {
				return retrieveErr(503, "", "down")
			}
			return nil
		}
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(10*time.Minute)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
		defer c.Close()
		first, err := c.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(9*time.Minute + 30*time.Second)
		var last *oauth2.Token
		for time.Now().Before(deadline) {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatalf("Token failed while the old token was valid: %v", err)
			}
			last = tok
			time.Sleep(100 * time.Millisecond)
		}
		if last == first || last.AccessToken != "at-1" {
			t.Fatalf("token after recovery = %q, want at-1", last.AccessToken)
		}
		if len(attempts) != 5 {
			t.Fatalf("attempts = %d, want 5 (4 failures, then success)", len(attempts))
		}
		for i := 1; i < len(attempts); i++ {
			gap := attempts[i].Sub(attempts[i-1])
			lo := DefaultRetryBackoffMin << (i - 1) / 2
			if gap < lo {
				t.Fatalf("attempt %d came %v after the previous, want >= %v (backoff)", i+1, gap, lo)
			}
		}
		if n := evs.count(EventRefreshFailed); n != 4 {
			t.Fatalf("refresh-failed events = %d, want 4", n)
		}
		for _, e := range evs.all() {
			if e.Kind == EventRefreshFailed && (!errors.Is(e.Err, ErrTemporarilyUnavailable) || !e.Background) {
				t.Fatalf("failure event %+v: want a background ErrTemporarilyUnavailable", e)
			}
		}
	})
}

// invalid_grant: ErrReauthRequired, the dead token is deleted, the event
// fires; a still-valid access token is served until its mandatory window.
func TestReauthRequired(t *testing.T) {
	t.Parallel()
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Minute)))
			as.revoked = true
			var evs eventLog
			c, err := New(key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Token(t.Context())
			var e *Error
			if !errors.Is(err, ErrReauthRequired) || !errors.As(err, &e) || e.Code != "invalid_grant" || errors.Is(err, ErrPossibleRotationLoss) {
				t.Fatalf("err = %v; want ErrReauthRequired with code invalid_grant", err)
			}
			if st.get(key) != nil || st.deletes != 1 {
				t.Fatalf("the dead token is still stored (deletes %d)", st.deletes)
			}
			if evs.count(EventReauthRequired) != 1 {
				t.Fatalf("events %v, want one reauth_required", evs.all())
			}
		})
	})
	t.Run("while valid", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(time.Minute)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
			defer c.Close()
			t0, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			as.mu.Lock()
			as.revoked = true
			as.mu.Unlock()
			time.Sleep(52 * time.Second) // past the advisory point: the idle refresh fails
			if tok, err := c.Token(t.Context()); err != nil || tok != t0 {
				t.Fatalf("valid access token not served after invalid_grant: %v", err)
			}
			if st.get(key) != nil {
				t.Fatal("the dead token is still stored")
			}
			time.Sleep(5 * time.Second) // inside the mandatory window
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
				t.Fatalf("err = %v, want ErrReauthRequired", err)
			}
			if calls, _, _ := as.stats(); calls > 3 {
				t.Fatalf("upstream calls = %d: a dead grant must not be hammered", calls)
			}
		})
	})
	t.Run("removed by another process", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(time.Minute)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
			defer c.Close()
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			st.Delete(t.Context(), key) // logout elsewhere
			time.Sleep(time.Minute)
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
				t.Fatalf("err = %v, want ErrReauthRequired (the token must not be resurrected)", err)
			}
			// The Upstream may be asked without a refresh token (a client
			// credentials grant could still succeed); the refresh token
			// itself is never presented again.
			if _, _, presented := as.stats(); len(presented) > 1 || (len(presented) == 1 && presented[0] != "") || st.get(key) != nil {
				t.Fatalf("presented %q, stored %v; want no refresh token presented and nothing stored", presented, st.get(key))
			}
		})
	})
}

// C-03: a refresh whose answer is lost after the server rotated.
func TestRotationLoss(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, grace time.Duration) (*rotatingAS, *memStore, *Cache) {
		as := newRotatingAS(time.Hour)
		as.grace = 20 * time.Second
		as.lost = func(n int) bool { return n == 1 }
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.RotationGrace = grace })
		return as, st, c
	}
	t.Run("no grace: no blind retry, then possible rotation loss", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, _, c := setup(t, 0)
			defer c.Close()
			_, err := c.Token(t.Context())
			if !errors.Is(err, ErrNetwork) {
				t.Fatalf("err = %v, want ErrNetwork", err)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("calls = %d, want 1 (no blind retry without a grace)", calls)
			}
			time.Sleep(time.Minute) // past the backoff and the server's grace
			_, err = c.Token(t.Context())
			if !errors.Is(err, ErrReauthRequired) || !errors.Is(err, ErrPossibleRotationLoss) || !strings.Contains(err.Error(), "possible rotation loss") {
				t.Fatalf("err = %v, want ErrReauthRequired saying possible rotation loss", err)
			}
		})
	})
	t.Run("within the grace: one retry", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, st, c := setup(t, 10*time.Second)
			defer c.Close()
			tok, err := c.Token(t.Context())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1 after one retry", tok, err)
			}
			calls, reuses, presented := as.stats()
			if calls != 2 || reuses != 0 || presented[1] != "rt-0" {
				t.Fatalf("calls %d reuses %d presented %v", calls, reuses, presented)
			}
			if st.get(c.Key()).RefreshToken != "rt-1" {
				t.Fatal("rt-1 not stored")
			}
		})
	})
	t.Run("the store is reloaded first", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, st, c := setup(t, 0)
			defer c.Close()
			// Another process that shares the store (without our lock)
			// saved a fresh token while our answer was lost.
			as.lost = func(n int) bool {
				st.put(c.Key(), &oauth2.Token{AccessToken: "other-at", RefreshToken: "other-rt", Expiry: time.Now().Add(time.Hour)})
				return true
			}
			tok, err := c.Token(t.Context())
			if err != nil || tok.AccessToken != "other-at" {
				t.Fatalf("Token = %v, %v; want the stored token adopted", tok, err)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("calls = %d, want 1", calls)
			}
		})
	})
	t.Run("dial errors are not suspect", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, _, c := setup(t, 0)
			defer c.Close()
			as.lost = nil
			as.fail = func(n int) error {
				switch n {
				case 1:
					return &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
				case 2:
					return retrieveErr(400, "invalid_grant", "")
				}
				return nil
			}
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrNetwork) {
				t.Fatalf("err = %v, want ErrNetwork", err)
			}
			time.Sleep(time.Minute)
			_, err := c.Token(t.Context())
			if !errors.Is(err, ErrReauthRequired) || errors.Is(err, ErrPossibleRotationLoss) {
				t.Fatalf("err = %v, want ErrReauthRequired without rotation loss", err)
			}
		})
	})
}

// The idle timer refreshes a process that makes no calls; it can be turned
// off.
func TestIdleRefresh(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("disabled=%v", disable), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as := newRotatingAS(time.Hour)
				st := newMemStore()
				key := testKey(t)
				st.put(key, as.initial(time.Now().Add(10*time.Minute)))
				c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = disable })
				defer c.Close()
				if _, err := c.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(9*time.Minute + 50*time.Second) // past the advisory point, inside the validity
				calls, _, _ := as.stats()
				if want := map[bool]int{false: 1, true: 0}[disable]; calls != want {
					t.Fatalf("upstream calls while idle = %d, want %d", calls, want)
				}
				waits := c.c.waits.Load()
				tok, err := c.Token(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if !disable && (tok.AccessToken != "at-1" || c.c.waits.Load() != waits) {
					t.Fatalf("after the idle refresh: %q, waited %v", tok.AccessToken, c.c.waits.Load() != waits)
				}
			})
		})
	}
}

// Another process refreshed already: the stored token is adopted without
// calling the Upstream.
func TestAdoptsTokenFromAnotherProcess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(time.Minute)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
		defer c.Close()
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		// "Another process" refreshes through the same server and store.
		newer, err := as.Token(t.Context(), st.get(key))
		if err != nil {
			t.Fatal(err)
		}
		st.put(key, newer)
		time.Sleep(time.Minute)
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v; want the adopted at-1", tok, err)
		}
		if calls, reuses, _ := as.stats(); calls != 1 || reuses != 0 {
			t.Fatalf("upstream calls = %d (reuses %d), want only the other process's", calls, reuses)
		}
		if evs.count(EventAdopted) != 1 {
			t.Fatalf("events %v, want one adopted", evs.all())
		}
	})
}

func TestRefreshTokenExpiringEvent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rtExp := time.Now().Add(25 * time.Hour)
		var evs eventLog
		c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			tok := &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}
			return tok.WithExtra(map[string]any{tokenx.KeyRefreshTokenExpiry: rtExp}), nil
		}), func(o *Options) { o.OnEvent = evs.add })
		defer c.Close()
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Minute)
		if n := evs.count(EventRefreshTokenExpiring); n != 0 {
			t.Fatalf("early event")
		}
		time.Sleep(2 * time.Minute)
		if n := evs.count(EventRefreshTokenExpiring); n != 1 {
			t.Fatalf("refresh-token-expiring events = %d, want 1", n)
		}
		time.Sleep(3 * time.Hour) // more refreshes, same refresh token: no repeat
		if n := evs.count(EventRefreshTokenExpiring); n != 1 {
			t.Fatalf("refresh-token-expiring events = %d, want still 1", n)
		}
		for _, e := range evs.all() {
			if e.Kind == EventRefreshTokenExpiring && !e.RefreshTokenExpiry.Equal(rtExp) {
				t.Fatalf("event expiry %v, want %v", e.RefreshTokenExpiry, rtExp)
			}
		}
	})
}

// The schedule follows the documented model for a range of lifetimes.
func TestSchedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life            time.Duration
		margin, window  time.Duration // expected without jitter (rand 0.5)
		lowFrac, hiFrac float64       // advisory point as a fraction of life for rand 0 / ~1
	}{
		// rand 0 gives the smallest margin (latest refresh), rand ~1 the largest.
		{12 * time.Second, 2400 * time.Millisecond, 1200 * time.Millisecond, 0.85, 0.75},
		{time.Minute, 12 * time.Second, 6 * time.Second, 0.85, 0.75},
		{10 * time.Minute, 2 * time.Minute, 10 * time.Second, 0.85, 0.75},
		{time.Hour, 5 * time.Minute, 10 * time.Second, 1 - 3.75/60, 1 - 6.25/60},
		{24 * time.Hour, 5 * time.Minute, 10 * time.Second, 1 - 3.75/1440, 1 - 6.25/1440},
	} {
		t.Run(tc.life.String(), func(t *testing.T) {
			for _, r := range []struct {
				v    float64
				frac float64
			}{{0.5, -1}, {0, tc.lowFrac}, {0.9999999, tc.hiFrac}} {
				c := newCore("k", nil, Options{rand: func() float64 { return r.v }}.resolve())
				s := c.newState(&oauth2.Token{AccessToken: "a", Expiry: now.Add(tc.life)}, now, fromUpstream)
				if got := s.expiry.Sub(s.mandatoryAt); got != tc.window {
					t.Errorf("window = %v, want %v", got, tc.window)
				}
				margin := s.expiry.Sub(s.advisoryAt)
				if r.frac < 0 && margin != tc.margin {
					t.Errorf("margin = %v, want %v", margin, tc.margin)
				}
				if r.frac >= 0 {
					frac := float64(s.advisoryAt.Sub(now)) / float64(tc.life)
					if frac < r.frac-0.001 || frac > r.frac+0.001 {
						t.Errorf("rand %v: advisory at %.4f of the lifetime, want %.4f", r.v, frac, r.frac)
					}
				}
				if !s.fresh {
					t.Errorf("a new token is not fresh")
				}
			}
		})
	}
}

// Options are clamped once.
func TestOptionsResolve(t *testing.T) {
	t.Parallel()
	o := Options{AdvisoryFraction: 2, Jitter: -1, DefaultLifetime: time.Nanosecond, MaxLifetime: 100 * 365 * 24 * time.Hour,
		RetryBackoffMin: time.Minute, RetryBackoffMax: time.Second, RefreshTimeout: -5, RotationGrace: -time.Second}.resolve()
	if o.AdvisoryFraction != 0.95 || o.Jitter != 0 || o.DefaultLifetime != time.Second || o.MaxLifetime != 365*24*time.Hour ||
		o.RetryBackoffMax != time.Minute || o.RefreshTimeout != DefaultRefreshTimeout || o.RotationGrace != 0 || o.Logger == nil {
		t.Fatalf("resolved %+v", o)
	}
	d := Options{}.resolve()
	if d.DefaultLifetime != time.Hour || d.MandatoryWindow != 10*time.Second || d.MaxAdvisoryMargin != 5*time.Minute || d.Jitter != 0.25 ||
		d.LockTimeout != 60*time.Second || d.RefreshTimeout != 30*time.Second {
		t.Fatalf("defaults %+v", d)
	}
}

// Set publishes a login's token after saving it.
func TestSet(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	var evs eventLog
	c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return nil, errors.New("not called")
	}), func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
	defer c.Close()
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

func TestClear(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	var calls atomic.Int32
	c := mustNew(t, UpstreamFunc(func(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		calls.Add(1)
		if cur == nil || cur.RefreshToken == "" {
			return nil, fmt.Errorf("no refresh token: %w", ErrReauthRequired)
		}
		return &oauth2.Token{AccessToken: "refreshed", RefreshToken: "rt-new", Expiry: time.Now().Add(time.Hour)}, nil
	}), func(o *Options) { o.Persister = st })
	defer c.Close()
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	old, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.get(c.Key()) != nil {
		t.Fatal("Clear left the stored token")
	}
	tok, err := c.Token(t.Context())
	if !errors.Is(err, ErrReauthRequired) || tok != nil {
		t.Fatalf("Token after Clear = %v, %v; want ErrReauthRequired", tok, err)
	}
	if c.Invalidate(old) {
		t.Fatal("the cleared token is still current")
	}
	// A new login brings the cache back at once, backoff or not.
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "login2", RefreshToken: "rt2", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "login2" {
		t.Fatalf("Token after a new Set = %v, %v", tok, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times, want 1 (the call that found no refresh token)", n)
	}
}
