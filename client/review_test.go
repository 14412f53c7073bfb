package client

// Regression tests for the findings of the client review: each failed
// before its fix.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// A resource cache shared by two Clients keeps working after the Client
// that created it is closed (its upstream must not depend on that Client).
func TestSharedResourceCacheOutlivesItsCreator(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, cfg)
	login(t, c1)
	if _, err := c1.ForResource(apiB.Resource()); err != nil {
		t.Fatal(err)
	}
	c2 := mustNew(t, cfg)
	rb2, err := c2.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	c1.Close()
	if _, err := rb2.Token(t.Context()); err != nil {
		t.Fatalf("resource token after the first Client closed: %v", err)
	}
	if _, err := c1.Token(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token on a closed Client = %v, want ErrClosed", err)
	}
	if err := c1.Logout(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Logout on a closed Client = %v, want ErrClosed", err)
	}
	if _, err := c1.Status(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Status on a closed Client = %v, want ErrClosed", err)
	}
	if _, err := c1.HTTPClient(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("HTTPClient on a closed Client = %v, want ErrClosed", err)
	}
}

// After a new user logs in, the other APIs are not called with the previous
// user's tokens, including ones an earlier process stored.
func TestLoginDropsPreviousUsersResourceTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{Subject: "alice"})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, cfg)
	login(t, c1)
	rb, _ := c1.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	c1.Close() // an earlier process

	e.as.Update(func(c *oauthtest.Config) { c.Subject = "bob" })
	c2 := mustNew(t, cfg)
	login(t, c2)
	rb2, _ := c2.ForResource(apiB.Resource())
	tok, err := rb2.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, ok := e.as.Introspect(tok.AccessToken)
	if !ok || info.Subject != "bob" {
		t.Fatalf("API B's token belongs to %q after bob logged in", info.Subject)
	}
}

// A custom base transport that reports no connections: a refresh whose
// answer was lost must still not be sent twice.
func TestNoReplayWithCustomTransport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.config()
	cfg.HTTP.Transport = e.as.Transport()
	c := mustNew(t, cfg)
	login(t, c)
	e.as.ResetStats()
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantRefreshToken, Times: 1})
	forceRefresh(t, c)
	c.Token(t.Context())
	if st := e.as.Stats(); st.Grants[oauthtest.GrantRefreshToken] != 1 || st.RefreshTokensPresentedTwice != 0 {
		t.Fatalf("refresh POSTs %d, presented twice %d; want 1 and 0", st.Grants[oauthtest.GrantRefreshToken], st.RefreshTokensPresentedTwice)
	}
}

// Logout deletes locally even when revocation hangs past the caller's
// deadline.
func TestLogoutDeletesWhenRevocationHangs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	c := mustNew(t, e.config())
	login(t, c)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointRevocation})
	defer e.as.ReleaseHangs()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := c.Logout(ctx)
	var le *LogoutError
	if !errors.As(err, &le) || !le.LocalDeleted || !contains(le.NotRevoked, "refresh token") {
		t.Fatalf("Logout = %v", err)
	}
	if _, err := e.store.Load(t.Context(), c.baseKey().String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the login is still stored: %v", err)
	}
}

// With explicit endpoints (no issuer), a server that sends iss (RFC 9207)
// does not make every login fail; a discovery issuer mismatch is never
// ignored, even with explicit endpoints.
func TestIssuerChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.config()
	cfg.Issuer = ""
	cfg.Endpoints = Endpoints{AuthURL: e.as.AuthorizeURL(), TokenURL: e.as.TokenURL()}
	c := mustNew(t, cfg)
	login(t, c)

	bad := newEnv(t, oauthtest.Config{DiscoveryIssuer: "https://evil.example"})
	cfg = bad.config()
	cfg.Endpoints = Endpoints{TokenURL: bad.as.TokenURL()}
	if _, err := New(t.Context(), with(cfg)); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("New with a mismatched discovery issuer and explicit endpoints = %v", err)
	}
}

// Two Clients of one credential must share a store, and both see events.
func TestSecondClientSameCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	var n1, n2 atomic.Int32
	cfg := e.config()
	cfg.Events = func(ev Event) {
		if ev.Kind == EventRefreshed {
			n1.Add(1)
		}
	}
	c1 := mustNew(t, cfg)
	login(t, c1)
	other, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	cfg2 := e.config()
	cfg2.Store = other
	if _, err := New(t.Context(), with(cfg2)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a second Client with another store = %v, want ErrInvalidConfig", err)
	}
	cfg3 := e.config()
	cfg3.Events = func(ev Event) {
		if ev.Kind == EventRefreshed {
			n2.Add(1)
		}
	}
	c2 := mustNew(t, cfg3)
	forceRefresh(t, c2)
	if _, err := c2.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n1.Load() != 1 || n2.Load() != 1 {
		t.Fatalf("refresh events seen: first Client %d, second %d; want 1 and 1", n1.Load(), n2.Load())
	}
}

// An OpenBrowser that never returns does not hold the login past its
// timeout.
func TestBlockingBrowserOpener(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.config()
	release := make(chan struct{})
	defer close(release)
	cfg.OpenBrowser = func(string) error { <-release; return nil }
	cfg.LoginTimeout = 100 * time.Millisecond
	c := mustNew(t, cfg)
	start := time.Now()
	if err := c.Login(t.Context()); !errors.Is(err, ErrLoginExpired) {
		t.Fatalf("Login = %v, want ErrLoginExpired", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Login took %v with a 100ms timeout", d)
	}
}

// The login entry of a one-resource configuration and the minted entry of
// the same resource under a several-resource configuration never collide.
func TestLoginAndResourceKeysDiffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	one := e.config() // Resources: [api A]
	many := e.config()
	many.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, one)
	c2 := mustNew(t, many)
	ra, _ := c2.ForResource(e.api.Resource())
	if mustDefault(t, c1).key.String() == ra.key.String() {
		t.Fatal("a login entry and a minted resource entry share a key")
	}
}

// plaintext-file warns where a person sees it, without any logger.
func TestPlaintextWarnsOnPrompt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.config()
	dir := filepath.Join(t.TempDir(), "tokens") // created 0700 by the store
	cfg.Store = nil
	cfg.Logger = nil
	cfg.StoreOptions = []func(*store.Options){func(o *store.Options) {
		o.Mode, o.Dir, o.LockDir = store.ModePlaintextFile, dir, dir
	}}
	var prompt syncBuffer
	cfg.Prompt = &prompt
	c := mustNew(t, cfg)
	_ = c
	if !strings.Contains(prompt.String(), "WARNING") {
		t.Fatalf("no warning on the prompt: %q", prompt.String())
	}
}

// The caller's own deadline stays context.DeadlineExceeded (not the
// endpoint's timeout), and a 503 with Retry-After on a single-use request
// is a typed rate-limit error with the hint.
func TestDeadlinesAndRetryAfterOnSingleUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	c := mustNew(t, e.config())
	login(t, c)
	g := c.grant
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Times: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	_, err := g.tokenRequest(ctx, g.refreshForm("x", nil), replayNever)
	cancel()
	e.as.ReleaseHangs()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTokenEndpointTimeout) {
		t.Fatalf("err = %v, want context.DeadlineExceeded and not ErrTokenEndpointTimeout", err)
	}
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, RetryAfter: "120", Times: 1})
	_, err = g.tokenRequest(t.Context(), g.refreshForm("x", nil), replayNever)
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Minute || !errors.Is(err, ErrTemporarilyUnavailable) || rl.Code != "temporarily_unavailable" {
		t.Fatalf("err = %v (%+v), want a *RateLimitError with the 2m hint and the code", err, rl)
	}
}

// The listener is closed after a successful login and after a failed code
// exchange, and the browser gets its page.
func TestListenerClosedAfterSuccessAndExchangeFailure(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		e := newEnv(t, oauthtest.Config{})
		cfg := e.config()
		type seen struct {
			callback string
			status   int
		}
		got := make(chan seen, 1)
		cfg.OpenBrowser = func(u string) error {
			redirect, err := e.as.Authorize(context.Background(), u)
			if err != nil {
				return err
			}
			resp, err := http.Get(redirect.String())
			st := 0
			if err == nil {
				st = resp.StatusCode
				resp.Body.Close()
			}
			got <- seen{redirect.String(), st}
			return nil
		}
		if fail {
			e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Code: "invalid_grant", Times: 1})
		}
		c := mustNew(t, cfg)
		err := c.Login(t.Context())
		if fail != (err != nil) {
			t.Fatalf("fail=%v: Login = %v", fail, err)
		}
		s := <-got
		if s.status != http.StatusOK {
			t.Fatalf("fail=%v: the browser got status %d, want the success page", fail, s.status)
		}
		assertClosed(t, s.callback)
	}
}

// A device poll that times out is one POST: polling goes on at the interval
// and succeeds. The hang hits the second poll (the first set the server's
// last-poll time). Two timeouts: the call's total one (HTTP.Timeout), and a
// per-attempt one in the base transport (as http.Transport's
// ResponseHeaderTimeout), which go-retryablehttp would retry at once if
// polls were replayable. The server runs in memory on fake time, so the
// 300 ms timeouts fire only for the hung poll, however loaded the machine.
func TestDevicePollTimeoutNotReplayed(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	for _, tc := range []struct {
		name          string
		total, header time.Duration
	}{
		{"call-timeout", 300 * time.Millisecond, 0},
		{"attempt-timeout", 10 * time.Second, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as, err := oauthtest.New(oauthtest.Config{InMemory: true, DeviceInterval: interval, DevicePendingPolls: 2})
				if err != nil {
					t.Fatal(err)
				}
				defer as.Close()
				var base http.RoundTripper = as.Transport()
				if tc.header > 0 {
					base = attemptTimeout{base: base, d: tc.header}
				}
				rec := &wireRecorder{base: base}
				rec.onPost(func(p wirePost) {
					if p.grant() == oauthtest.GrantDeviceCode && p.n == 2 {
						as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantDeviceCode, Times: 1})
					}
				})
				st, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
				c := mustNew(t, Options{
					Issuer: as.Issuer(), ClientID: oauthtest.DefaultClientID, AllowInsecureLoopback: true, Store: st,
					HTTP:         HTTPSettings{Timeout: tc.total, Transport: rec, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond},
					DevicePrompt: func(ctx context.Context, d DeviceCode) { <-ctx.Done() },
				})
				if err := c.Login(t.Context(), WithDevice()); err != nil {
					t.Fatalf("Login: %v", err)
				}
				// pending, timeout, pending, success.
				assertPollsSpaced(t, rec, interval, 4)
				st2 := as.Stats()
				if st2.Faults[oauthtest.FaultHang] != 1 {
					t.Fatalf("the hang fired %d times, want 1", st2.Faults[oauthtest.FaultHang])
				}
				if st2.SlowDowns != 0 {
					t.Fatalf("slow_downs = %d: a timed-out poll was replayed early", st2.SlowDowns)
				}
			})
		})
	}
}

// attemptTimeout bounds each attempt the way http.Transport's
// ResponseHeaderTimeout does: no response within d fails the attempt with
// a timeout (a net.Error), while the call's own context goes on.
type attemptTimeout struct {
	base http.RoundTripper
	d    time.Duration
}

func (a attemptTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), a.d)
	resp, err := a.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if req.Context().Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, attemptTimeoutError{}
		}
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// attemptTimeoutError is the net.Error of a timed-out attempt.
type attemptTimeoutError struct{}

func (attemptTimeoutError) Error() string   { return "net/http: timeout awaiting response headers" }
func (attemptTimeoutError) Timeout() bool   { return true }
func (attemptTimeoutError) Temporary() bool { return true }

// cancelOnClose releases an attempt's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
