package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// login logs c in through the fake browser.
func login(t *testing.T, c *Client) {
	t.Helper()
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login: %v", err)
	}
}

// forceRefresh drops the default cache's current token so the next Token
// call refreshes it.
func forceRefresh(t *testing.T, c *Client) {
	t.Helper()
	r := mustDefault(t, c)
	tok, err := r.cache.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if !r.cache.Invalidate(tok) {
		t.Fatal("Invalidate did not drop the current token")
	}
}

// AC1: one POST per refresh and code exchange under 503, connection reset
// and timeout; client credentials are retried.
func TestOnePostPerSingleUseRequest(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name string
		f    oauthtest.Fault
		want error
	}{
		{"503", oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Times: 1}, ErrTemporarilyUnavailable},
		{"502-html", oauthtest.Fault{Kind: oauthtest.FaultBadGateway, Times: 1}, ErrTemporarilyUnavailable},
		{"reset", oauthtest.Fault{Kind: oauthtest.FaultReset, Times: 1}, ErrNetwork},
		{"response-lost", oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Times: 1}, ErrNetwork},
		{"timeout", oauthtest.Fault{Kind: oauthtest.FaultHang, Times: 1}, ErrTokenEndpointTimeout},
	}
	for _, fc := range faults {
		t.Run("refresh/"+fc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{})
			cfg := e.config()
			cfg.HTTP.Timeout = 300 * time.Millisecond
			c := mustNew(t, cfg)
			login(t, c)
			e.as.ResetStats()
			f := fc.f
			f.Endpoint, f.Grant = oauthtest.EndpointToken, oauthtest.GrantRefreshToken
			e.as.InjectFault(f)
			forceRefresh(t, c)
			start := time.Now()
			_, err := c.Token(t.Context())
			if !errors.Is(err, fc.want) {
				t.Fatalf("Token = %v, want %v", err, fc.want)
			}
			if fc.name == "timeout" {
				if d := time.Since(start); d > cfg.HTTP.Timeout+time.Second {
					t.Fatalf("timeout took %v", d)
				}
				e.as.ReleaseHangs()
			}
			if n := e.as.Stats().Grants[oauthtest.GrantRefreshToken]; n != 1 {
				t.Fatalf("refresh POSTs = %d, want exactly 1", n)
			}
		})
		t.Run("code/"+fc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{})
			cfg := e.config()
			cfg.HTTP.Timeout = 300 * time.Millisecond
			c := mustNew(t, cfg)
			f := fc.f
			f.Endpoint, f.Grant = oauthtest.EndpointToken, oauthtest.GrantAuthorizationCode
			e.as.InjectFault(f)
			err := c.Login(t.Context())
			if !errors.Is(err, fc.want) {
				t.Fatalf("Login = %v, want %v", err, fc.want)
			}
			e.as.ReleaseHangs()
			if n := e.as.Stats().Grants[oauthtest.GrantAuthorizationCode]; n != 1 {
				t.Fatalf("code exchange POSTs = %d, want exactly 1", n)
			}
		})
	}
	t.Run("client-credentials-retried", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, oauthtest.Config{})
		c := mustNew(t, e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretPost))
		e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatalf("Token after two 503s = %v", err)
		}
		if n := e.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 3 {
			t.Fatalf("client_credentials POSTs = %d, want 3 (two 503s, then success)", n)
		}
	})
	t.Run("dial-error-retried-for-single-use", func(t *testing.T) {
		// A refresh whose connection was never made can be retried: not a
		// byte reached a server. checkRetry decides on the connected flag.
		t.Parallel()
		a := &attempt{policy: replayNever, now: time.Now, budget: time.Minute, waitMin: time.Millisecond, waitMax: time.Millisecond}
		ctx := context.WithValue(t.Context(), attemptKey{}, a)
		dialErr := &url.Error{Op: "Post", URL: "https://as.example/token", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
		if retry, _ := checkRetry(ctx, nil, dialErr); !retry {
			t.Fatal("a dial error before any connection was not retried")
		}
		a.connected.Store(true)
		if retry, _ := checkRetry(ctx, nil, dialErr); retry {
			t.Fatal("an error after a connection was made was retried for a single-use credential")
		}
		if retry, _ := checkRetry(ctx, &http.Response{StatusCode: 503, Header: http.Header{}}, nil); retry {
			t.Fatal("a 503 was retried for a single-use credential")
		}
	})
}

// AC1, device flow: each poll is one POST, never replayed. The recorder sees
// every POST on the wire, retries included. The fault hits the second poll,
// after the first one set the server's last-poll time, so a replay shows
// twice: as an extra POST sooner than the interval after the faulted one,
// and (when the fault answers after processing) as a slow_down.
func TestDevicePollsNotReplayed(t *testing.T) {
	t.Parallel()
	const interval = 5 * time.Second
	for _, f := range []oauthtest.Fault{
		{Kind: oauthtest.FaultUnavailable},
		{Kind: oauthtest.FaultUnavailable, After: true},
		{Kind: oauthtest.FaultBadGateway},
		{Kind: oauthtest.FaultReset},
		{Kind: oauthtest.FaultResponseLost},
	} {
		name := f.Kind.String()
		if f.After {
			name += "-after"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as, c, rec := deviceEnv(t, oauthtest.Config{DevicePendingPolls: 2, DeviceInterval: interval})
				f.Endpoint, f.Grant, f.Times = oauthtest.EndpointToken, oauthtest.GrantDeviceCode, 1
				rec.onPost(func(p wirePost) {
					if p.grant() == oauthtest.GrantDeviceCode && p.n == 2 {
						as.InjectFault(f)
					}
				})
				if err := c.Login(t.Context(), WithDevice()); err != nil {
					t.Fatalf("Login: %v", err)
				}
				// pending, fault, pending, success; a fault after
				// processing counts as the second pending poll.
				want := 4
				if f.After || f.Kind == oauthtest.FaultResponseLost {
					want = 3
				}
				assertPollsSpaced(t, rec, interval, want)
				st := as.Stats()
				if st.Faults[f.Kind] != 1 {
					t.Fatalf("the %s fault fired %d times, want 1", f.Kind, st.Faults[f.Kind])
				}
				if st.SlowDowns != 0 {
					t.Fatalf("slow_downs = %d: a poll was replayed early", st.SlowDowns)
				}
			})
		})
	}
}

// assertPollsSpaced checks that want device polls went on the wire, the
// first at least interval after the device authorization request and each
// at least interval after the previous one.
func assertPollsSpaced(t *testing.T, rec *wireRecorder, interval time.Duration, want int) {
	t.Helper()
	auth := rec.posts(oauthtest.PathDeviceAuthorization, "")
	polls := rec.posts(oauthtest.PathToken, oauthtest.GrantDeviceCode)
	if len(auth) != 1 {
		t.Fatalf("%d device authorization requests, want 1", len(auth))
	}
	at := []time.Time{auth[0].at}
	for _, p := range polls {
		at = append(at, p.at)
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < interval {
			t.Errorf("poll %d went out %v after the previous request, want >= %v (a replay?)", i, d, interval)
		}
	}
	if len(polls) != want {
		t.Errorf("%d device-poll POSTs on the wire, want exactly %d", len(polls), want)
	}
}

// wireRecorder is an http.RoundTripper in front of a base transport that
// records every form POST as it goes on the wire: one record per attempt,
// so a retry shows up as a record of its own, with the body as sent (not as
// the client meant it).
type wireRecorder struct {
	base http.RoundTripper

	mu     sync.Mutex // guards before and sent
	before func(wirePost)
	sent   []wirePost
}

// wirePost is one recorded POST.
type wirePost struct {
	at   time.Time
	path string
	form url.Values
	n    int // its 1-based position among the recorded POSTs of its grant_type
}

func (p wirePost) grant() string { return p.form.Get("grant_type") }

// onPost makes fn run for each POST after it is recorded and before it is
// forwarded (to inject a fault into exactly that request).
func (w *wireRecorder) onPost(fn func(wirePost)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.before = fn
}

// posts returns the recorded POSTs to path, of grant type grant unless it
// is empty, in order.
func (w *wireRecorder) posts(path, grant string) []wirePost {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wirePost
	for _, p := range w.sent {
		if p.path == path && (grant == "" || p.grant() == grant) {
			out = append(out, p)
		}
	}
	return out
}

// RoundTrip records a POST's form body and forwards a copy of the request.
func (w *wireRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil {
		return w.base.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, _ := url.ParseQuery(string(b))
	p := wirePost{at: time.Now(), path: req.URL.Path, form: form, n: 1}
	w.mu.Lock()
	for _, q := range w.sent {
		if q.grant() == p.grant() {
			p.n++
		}
	}
	w.sent = append(w.sent, p)
	before := w.before
	w.mu.Unlock()
	if before != nil {
		before(p)
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return w.base.RoundTrip(out)
}

// deviceEnv starts an in-memory fake server inside a synctest bubble (its
// clock is the bubble's) and a client talking to it through a recorder.
func deviceEnv(t *testing.T, cfg oauthtest.Config) (*oauthtest.Server, *Client, *wireRecorder) {
	cfg.InMemory = true
	as, err := oauthtest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	st, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	rec := &wireRecorder{base: as.Transport()}
	c, err := New(t.Context(), with(Options{
		Issuer: as.Issuer(), ClientID: oauthtest.DefaultClientID, AllowInsecureLoopback: true,
		Store: st, Prompt: discardWriter{},
		DevicePrompt: func(ctx context.Context, d DeviceCode) { <-ctx.Done() },
		HTTP:         HTTPSettings{Transport: rec},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return as, c, rec
}

// deviceTimes returns when the recorded device polls were sent.
func deviceTimes(rec *wireRecorder) []time.Time {
	var at []time.Time
	for _, p := range rec.posts(oauthtest.PathToken, oauthtest.GrantDeviceCode) {
		at = append(at, p.at)
	}
	return at
}

// AC4: pending x3 then success, polls spaced at least the interval;
// slow_down twice adds 10 s for good; denied and expired are typed.
func TestDeviceFlowTiming(t *testing.T) {
	t.Parallel()
	t.Run("pending", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, c, rec := deviceEnv(t, oauthtest.Config{DevicePendingPolls: 3, DeviceInterval: 5 * time.Second})
			if err := c.Login(t.Context(), WithDevice()); err != nil {
				t.Fatal(err)
			}
			at := deviceTimes(rec)
			if len(at) != 4 {
				t.Fatalf("%d polls, want 4", len(at))
			}
			for i := 1; i < len(at); i++ {
				if d := at[i].Sub(at[i-1]); d < 5*time.Second {
					t.Fatalf("poll %d came %v after the previous one, want >= 5s", i, d)
				}
			}
		})
	})
	t.Run("slow_down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			as, c, rec := deviceEnv(t, oauthtest.Config{DevicePendingPolls: 4, DeviceInterval: 5 * time.Second})
			as.SlowDownNext(2)
			if err := c.Login(t.Context(), WithDevice()); err != nil {
				t.Fatal(err)
			}
			at := deviceTimes(rec)
			gaps := make([]time.Duration, 0, len(at))
			for i := 1; i < len(at); i++ {
				gaps = append(gaps, at[i].Sub(at[i-1]))
			}
			// Polls 1 and 2 get slow_down: the interval goes 5 -> 10 -> 15 s
			// and stays there.
			want := []time.Duration{10 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
			if len(gaps) < len(want) {
				t.Fatalf("gaps %v", gaps)
			}
			for i, w := range want {
				if gaps[i] != w {
					t.Fatalf("gaps %v, want %v...", gaps, want)
				}
			}
		})
	})
	t.Run("denied", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			as, c, _ := deviceEnv(t, oauthtest.Config{DeviceManualApproval: true})
			go func() {
				for len(as.Devices()) == 0 {
					time.Sleep(time.Second) // fake time: the bubble's clock
				}
				as.DenyDevice("")
			}()
			if err := c.Login(t.Context(), WithDevice()); !errors.Is(err, ErrAccessDenied) {
				t.Fatalf("Login = %v, want ErrAccessDenied", err)
			}
		})
	})
	t.Run("expired", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, c, _ := deviceEnv(t, oauthtest.Config{DeviceManualApproval: true, DeviceCodeLifetime: time.Minute})
			start := time.Now()
			if err := c.Login(t.Context(), WithDevice()); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("Login = %v, want ErrLoginExpired", err)
			}
			if d := time.Since(start); d > time.Minute+5*time.Second {
				t.Fatalf("polling went on for %v after a 1m code", d)
			}
		})
	})
}

// AC2: Retry-After: 86400 ends within the budget plus 1 s with a typed
// rate-limit error that carries the hint.
func TestRetryAfterCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
	cfg.HTTP.RetryBudget = 2 * time.Second
	c := mustNew(t, cfg)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRateLimited, Endpoint: oauthtest.EndpointToken, RetryAfter: "86400"})
	start := time.Now()
	_, err := c.Token(t.Context())
	if d := time.Since(start); d > cfg.HTTP.RetryBudget+time.Second {
		t.Fatalf("took %v, budget %v", d, cfg.HTTP.RetryBudget)
	}
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || !errors.Is(err, ErrTemporarilyUnavailable) {
		t.Fatalf("err = %v, want a *RateLimitError", err)
	}
	if rl.RetryAfter != 24*time.Hour {
		t.Fatalf("RetryAfter = %v, want 24h", rl.RetryAfter)
	}
}

// AC3: a missing code, a second callback and an error callback are
// rejected; the listener is closed on every exit path; no non-loopback
// bind. (A wrong or missing state does not end the login: the request is
// ignored, see TestForgedCallbacksIgnored.)
func TestLoginCallbackRejections(t *testing.T) {
	t.Parallel()
	tamper := map[string]func(q url.Values){
		"missing code": func(q url.Values) { q.Del("code") },
		"error":        func(q url.Values) { q.Del("code"); q.Set("error", "server_error") },
		"denied":       func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") },
		"wrong iss":    func(q url.Values) { q.Set("iss", "https://evil.example") },
	}
	want := map[string]error{"denied": ErrAccessDenied, "wrong iss": ErrIssuerMismatch}
	for name, f := range tamper {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{})
			cfg := e.config()
			callbacks := make(chan string, 1)
			cfg.OpenBrowser = func(u string) error {
				go func() {
					redirect, err := e.as.Authorize(context.Background(), u)
					if err != nil {
						t.Error(err)
						return
					}
					q := redirect.Query()
					f(q)
					redirect.RawQuery = q.Encode()
					callbacks <- redirect.String()
					oauthtest.Deliver(context.Background(), redirect.String())
				}()
				return nil
			}
			c := mustNew(t, cfg)
			err := c.Login(t.Context())
			w := want[name]
			if w == nil {
				w = ErrCallbackRejected
			}
			if !errors.Is(err, w) {
				t.Fatalf("Login = %v, want %v", err, w)
			}
			if e.as.Stats().Grants[oauthtest.GrantAuthorizationCode] != 0 {
				t.Fatal("a rejected callback's code was exchanged")
			}
			assertClosed(t, <-callbacks)
		})
	}
	t.Run("second callback", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, oauthtest.Config{})
		cfg := e.config()
		second := make(chan error, 1)
		cfg.OpenBrowser = func(u string) error {
			go func() {
				redirect, err := e.as.Authorize(context.Background(), u)
				if err != nil {
					second <- err
					return
				}
				// Two deliveries race for the one slot: exactly one wins.
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i := range 2 {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = oauthtest.Deliver(context.Background(), redirect.String()) }()
				}
				wg.Wait()
				if (errs[0] == nil) == (errs[1] == nil) {
					second <- fmt.Errorf("both or neither callback accepted: %v / %v", errs[0], errs[1])
					return
				}
				second <- nil
			}()
			return nil
		}
		c := mustNew(t, cfg)
		if err := c.Login(t.Context()); err != nil {
			t.Fatalf("Login: %v", err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		if n := e.as.Stats().CodeExchanges; n != 1 {
			t.Fatalf("code exchanges = %d", n)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, oauthtest.Config{})
		cfg := e.config()
		authURLs := make(chan string, 1)
		cfg.OpenBrowser = func(u string) error { authURLs <- u; return nil }
		cfg.LoginTimeout = 50 * time.Millisecond
		c := mustNew(t, cfg)
		if err := c.Login(t.Context()); !errors.Is(err, ErrLoginExpired) {
			t.Fatalf("Login = %v, want ErrLoginExpired", err)
		}
		u, _ := url.Parse(<-authURLs)
		assertClosed(t, u.Query().Get("redirect_uri"))
	})
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, oauthtest.Config{})
		cfg := e.config()
		ctx, cancel := context.WithCancel(t.Context())
		authURLs := make(chan string, 1)
		cfg.OpenBrowser = func(u string) error { authURLs <- u; cancel(); return nil }
		c := mustNew(t, cfg)
		if err := c.Login(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Login = %v, want context.Canceled", err)
		}
		u, _ := url.Parse(<-authURLs)
		assertClosed(t, u.Query().Get("redirect_uri"))
	})
	t.Run("non-loopback bind", func(t *testing.T) {
		t.Parallel()
		for _, h := range []string{"0.0.0.0", "192.168.1.10", "localhost", "::"} {
			e := newEnv(t, oauthtest.Config{})
			cfg := e.config()
			cfg.RedirectHost = h
			if _, err := New(t.Context(), with(cfg)); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("RedirectHost %q: New = %v, want ErrInvalidConfig", h, err)
			}
			if _, err := listenLoopback(t.Context(), h); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("listenLoopback(%q) = %v", h, err)
			}
		}
	})
	t.Run("pkce and state sent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, oauthtest.Config{})
		cfg := e.config()
		queries := make(chan url.Values, 1)
		cfg.OpenBrowser = func(u string) error {
			pu, _ := url.Parse(u)
			queries <- pu.Query()
			go e.as.Browse(context.Background(), u)
			return nil
		}
		c := mustNew(t, cfg)
		login(t, c)
		q := <-queries
		if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
			t.Fatalf("PKCE parameters: %v", q)
		}
		if len(q.Get("state")) < 22 { // 128 bits in base64url
			t.Fatalf("state %q is shorter than 128 bits", q.Get("state"))
		}
		ru, _ := url.Parse(q.Get("redirect_uri"))
		if ru.Hostname() != "127.0.0.1" || ru.Port() == "0" || ru.Port() == "" {
			t.Fatalf("redirect_uri %s", ru)
		}
	})
}

// assertClosed checks that nothing listens at the callback URL's address.
func assertClosed(t *testing.T, callback string) {
	t.Helper()
	u, err := url.Parse(callback)
	if err != nil || u.Host == "" {
		t.Fatalf("no callback URL to check (%q)", callback)
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("the callback listener %s is still open", u.Host)
	}
}

// AC5: a failing revocation endpoint does not keep the local entry.
func TestLogoutRevocationFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	c := mustNew(t, e.config())
	login(t, c)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
	err := c.Logout(t.Context())
	var le *LogoutError
	if !errors.As(err, &le) {
		t.Fatalf("Logout = %v, want *LogoutError", err)
	}
	if !le.LocalDeleted || !contains(le.NotRevoked, "refresh token") || !contains(le.NotRevoked, "access token") {
		t.Fatalf("LogoutError = %+v", le)
	}
	if !strings.Contains(err.Error(), "refresh token") {
		t.Fatalf("error does not say what was not revoked: %v", err)
	}
	if _, lerr := e.store.Load(t.Context(), c.baseKey().String()); !errors.Is(lerr, store.ErrNotFound) {
		t.Fatalf("local entry still there: %v", lerr)
	}
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token after logout = %v", err)
	}
}

// AC6: canary secrets never reach logs or error strings, at any level,
// including the go-retryablehttp path.
func TestCanarySecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{IDToken: true})
	secret := canary.New("secret")
	var errs []string
	var errsMu sync.Mutex
	record := func(err error) {
		if err != nil {
			errsMu.Lock()
			errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			errsMu.Unlock()
		}
	}
	// Confidential client: retries (go-retryablehttp logs), 503s, errors.
	cc := e.confidential(t, "job", secret, oauthtest.AuthClientSecretPost)
	cc.Events = func(ev Event) { record(ev.Err) }
	c1 := mustNew(t, cc)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
	tok1, err := c1.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken})
	forceRefresh(t, c1)
	_, err = c1.Token(t.Context())
	record(err)
	e.as.ClearFaults()

	// Login: codes (from the redirects) and PKCE verifiers (from the token
	// POSTs on the wire), tokens. The first code exchange fails, so its
	// code and verifier pass through the error paths too.
	cfg := e.config()
	wire := &wireRecorder{base: http.DefaultTransport.(*http.Transport).Clone()}
	cfg.HTTP.Transport = wire
	type authz struct{ code, challenge string }
	captured := make(chan authz, 2)
	cfg.OpenBrowser = func(u string) error {
		redirect, err := e.as.Authorize(context.Background(), u)
		if err != nil {
			return err
		}
		pu, _ := url.Parse(u)
		captured <- authz{redirect.Query().Get("code"), pu.Query().Get("code_challenge")}
		return oauthtest.Deliver(context.Background(), redirect.String())
	}
	cfg.Events = func(ev Event) { record(ev.Err) }
	c2 := mustNew(t, cfg)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantAuthorizationCode, Times: 1})
	err = c2.Login(t.Context())
	if !errors.Is(err, ErrNetwork) {
		t.Fatalf("Login with a lost response = %v, want ErrNetwork", err)
	}
	record(err)
	login(t, c2)
	tok2, _ := c2.Token(t.Context())
	exchanges := wire.posts(oauthtest.PathToken, oauthtest.GrantAuthorizationCode)
	if len(exchanges) != 2 {
		t.Fatalf("%d code exchanges on the wire, want 2", len(exchanges))
	}
	var codes, verifiers []string
	for i, x := range exchanges {
		a := <-captured
		code, verifier := x.form.Get("code"), x.form.Get("code_verifier")
		if code != a.code || oauth2.S256ChallengeFromVerifier(verifier) != a.challenge {
			t.Fatalf("exchange %d: the code or verifier on the wire does not match its authorization request", i)
		}
		codes, verifiers = append(codes, code), append(verifiers, verifier)
	}
	stored, _ := e.store.Load(t.Context(), c2.baseKey().String())
	// A refresh that fails with invalid_grant after a reset.
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultReset, Endpoint: oauthtest.EndpointToken, Times: 1})
	forceRefresh(t, c2)
	_, err = c2.Token(t.Context())
	record(err)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Code: "invalid_grant", Description: "token " + stored.RefreshToken + " revoked", Times: 1})
	mustDefault(t, c2).cache.Invalidate(tok2)
	_, err = c2.Token(t.Context())
	record(err)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
	record(c2.Logout(t.Context()))
	st, _ := c2.Status(t.Context())
	errs = append(errs, fmt.Sprintf("%+v", st))

	secrets := append([]string{secret, tok1.AccessToken, tok2.AccessToken, stored.RefreshToken, stored.IDToken}, append(codes, verifiers...)...)
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a canary was not captured; the test would prove nothing")
		}
	}
	errsMu.Lock()
	haystack := e.log.String() + strings.Join(errs, "\n")
	errsMu.Unlock()
	if len(lines(e.log.String())) < 10 || !strings.Contains(e.log.String(), "level=DEBUG") {
		t.Fatalf("too little logging to prove anything:\n%s", e.log.String())
	}
	if !strings.Contains(e.log.String(), "retryablehttp") {
		t.Fatal("the go-retryablehttp path did not log")
	}
	if found := canary.Find(haystack, secrets...); len(found) != 0 {
		t.Fatalf("%d secrets leaked into logs or errors", len(found))
	}
}

// AC7: two profiles for one issuer never read each other's tokens.
func TestProfilesIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{IDToken: true})
	mk := func(profile, subject string) *Client {
		if err := e.as.Update(func(c *oauthtest.Config) { c.Subject = subject }); err != nil {
			t.Fatal(err)
		}
		cfg := e.config()
		cfg.Profile = profile
		c := mustNew(t, cfg)
		login(t, c)
		return c
	}
	alice := mk("alice", "alice")
	bob := mk("bob", "bob")
	ta, _ := alice.Token(t.Context())
	tb, _ := bob.Token(t.Context())
	if ta.AccessToken == tb.AccessToken {
		t.Fatal("two profiles share a token")
	}
	sa, _ := alice.Status(t.Context())
	sb, _ := bob.Status(t.Context())
	if sa.Subject != "alice" || sb.Subject != "bob" {
		t.Fatalf("subjects %q %q", sa.Subject, sb.Subject)
	}
	// A fresh client for alice (a new process) sees alice's tokens.
	cfg := e.config()
	cfg.Profile = "alice"
	again := mustNew(t, cfg)
	if st, _ := again.Status(t.Context()); st.Subject != "alice" {
		t.Fatalf("alice's new client sees %q", st.Subject)
	}
	// Logging bob out leaves alice logged in.
	if err := bob.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := alice.Status(t.Context()); !st.LoggedIn {
		t.Fatal("logging bob out logged alice out")
	}
}

// AC8: two resources from one login: each API gets only its own token; one
// refresh token serves both and is rotated safely.
func TestTwoResourcesOneLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c := mustNew(t, cfg)
	login(t, c)
	ra, err := c.ForResource(e.api.Resource())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := c.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := ra.HTTPClient(t.Context())
	hb, _ := rb.HTTPClient(t.Context())
	for i := range 3 {
		if code, body := get(t, ha, e.api.URL()+"/a"); code != 200 {
			t.Fatalf("API A: %d %s", code, body)
		}
		if code, body := get(t, hb, apiB.URL()+"/b"); code != 200 {
			t.Fatalf("API B: %d %s", code, body)
		}
		// A's client pointed at B (and back) must not carry A's token.
		get(t, ha, apiB.URL()+"/cross")
		get(t, hb, e.api.URL()+"/cross")
		// Force new tokens for both: each uses (and rotates) the one
		// refresh token. (Clear, not Invalidate: repeated rejections of
		// fresh tokens are rate-limited, by design.)
		for _, r := range []*Resource{ra, rb} {
			if err := r.cache.Clear(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		_ = i
	}
	for _, api := range []*oauthtest.API{e.api, apiB} {
		s := api.Stats()
		if s.Foreign != 0 || s.Unknown != 0 {
			t.Fatalf("API %s received foreign tokens: %+v", api.Resource(), s)
		}
		if s.OK < 3 {
			t.Fatalf("API %s: %+v", api.Resource(), s)
		}
	}
	st := e.as.Stats()
	if st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 || st.FamilyRevocations != 0 {
		t.Fatalf("refresh token reused: %+v", st)
	}
	if st.Grants[oauthtest.GrantRefreshToken] < 6 {
		t.Fatalf("refresh grants = %d, want >= 6", st.Grants[oauthtest.GrantRefreshToken])
	}
	// Logout revokes and forgets every resource's token.
	if err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("resource token after logout: %v", err)
	}
}

// AC9: a server whose clock is 10 minutes ahead: tokens are refreshed
// before they expire by the server's clock.
func TestServerClockAhead(t *testing.T) {
	t.Parallel()
	for _, mode := range []oauthtest.ExpiresInMode{oauthtest.ExpiresInNumber, oauthtest.ExpiresInOmit} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{ClockOffset: 10 * time.Minute, AccessTokenLifetime: time.Hour, ExpiresIn: mode})
			cfg := e.config()
			var skews []time.Duration
			var mu sync.Mutex
			cfg.Events = func(ev Event) {
				if ev.Kind == EventClockSkew {
					mu.Lock()
					skews = append(skews, ev.Skew)
					mu.Unlock()
				}
			}
			c := mustNew(t, cfg)
			login(t, c)
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			info, ok := e.as.Introspect(tok.AccessToken)
			if !ok {
				t.Fatal("token unknown to the server")
			}
			// The server's expiry, in local time.
			serverExpiryLocal := info.Expiry.Add(-10 * time.Minute)
			if tok.Expiry.After(serverExpiryLocal.Add(2 * time.Second)) {
				t.Fatalf("client thinks the token expires at %v, the server at %v (local)", tok.Expiry, serverExpiryLocal)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(skews) == 0 || skews[0] < 9*time.Minute || skews[0] > 11*time.Minute {
				t.Fatalf("clock skew events %v", skews)
			}
		})
	}
}

// S-04: a token given by option or environment bypasses the store.
func TestFixedTokenBypassesStore(t *testing.T) {
	e := newEnv(t, oauthtest.Config{})
	tok, err := e.as.Mint(oauthtest.Grant{Resources: []string{e.api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENWARD_TEST_ACCESS_TOKEN", tok.AccessToken)
	cs := &countingStore{}
	c, err := New(t.Context(), with(Options{AccessTokenEnv: "TOKENWARD_TEST_ACCESS_TOKEN", Store: cs, APIOrigins: []string{e.api.URL()}, AllowInsecureLoopback: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, e.api.URL()+"/x"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := cs.calls(); n != 0 {
		t.Fatalf("store called %d times", n)
	}
}

type countingStore struct {
	mu sync.Mutex
	n  int
}

func (s *countingStore) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }
func (s *countingStore) hit()       { s.mu.Lock(); s.n++; s.mu.Unlock() }
func (s *countingStore) Load(context.Context, string) (*store.Entry, error) {
	s.hit()
	return nil, store.ErrNotFound
}
func (s *countingStore) Save(context.Context, string, *store.Entry) error { s.hit(); return nil }
func (s *countingStore) Delete(context.Context, string) error             { s.hit(); return nil }
func (s *countingStore) Lock(context.Context, string) (func() error, error) {
	s.hit()
	return func() error { return nil }, nil
}
func (s *countingStore) Status() store.Status { s.hit(); return store.Status{} }

func (s *countingStore) CheckWrite(context.Context) error { s.hit(); return nil }

var _ = oauth2.Token{}

// A later process's Logout also removes the tokens that an earlier process
// minted for the configured resources.
func TestLogoutRemovesEarlierResourceTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	cfg.Profile = "earlier"
	c1 := mustNew(t, cfg)
	login(t, c1)
	rb, _ := c1.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	name := rb.key.String()
	c1.Close()
	if _, err := e.store.Load(t.Context(), name); err != nil {
		t.Fatalf("resource entry not stored: %v", err)
	}
	c2 := mustNew(t, cfg)
	if err := c2.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Load(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resource entry left behind: %v", err)
	}
}

// failingStore fails the next n saves of one name, then works.
type failingStore struct {
	store.Store
	mu   sync.Mutex
	name string
	n    int
}

func (f *failingStore) Save(ctx context.Context, name string, e *store.Entry) error {
	f.mu.Lock()
	fail := name == f.name && f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("injected: %w", store.ErrTimeout)
	}
	return f.Store.Save(ctx, name, e)
}

// Minting a resource token rotates the login's refresh token; when saving
// it fails, the next mint (or refresh) uses the rotated one from memory,
// never the spent one in the store, and it reaches the store later.
func TestMintRotationSurvivesSaveFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	fs := &failingStore{Store: e.store}
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	cfg.Store = fs
	c := mustNew(t, cfg)
	login(t, c)
	fs.mu.Lock()
	fs.name, fs.n = c.baseKey().String(), 8 // the saves and their reduced-set fallbacks
	fs.mu.Unlock()
	// The login's own refresh rotates first and cannot be saved: the live
	// refresh token is in the default cache's memory only.
	forceRefresh(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatalf("refresh with a failing store: %v", err)
	}
	rb, _ := c.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatalf("first mint: %v", err)
	}
	ra, _ := c.ForResource(e.api.Resource())
	if _, err := ra.Token(t.Context()); err != nil {
		t.Fatalf("second mint after a failed save: %v", err)
	}
	st := e.as.Stats()
	if st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 {
		t.Fatalf("a spent refresh token was presented: %+v", st)
	}
	// The live refresh token reaches the store on a later access.
	if !eventuallyOK(func() bool {
		c.Token(t.Context())
		ent, err := e.store.Load(t.Context(), c.baseKey().String())
		if err != nil {
			return false
		}
		info, ok := e.as.Introspect(ent.RefreshToken)
		return ok && info.Active
	}) {
		t.Fatal("the rotated refresh token never reached the store")
	}
}

// eventuallyOK polls cond for up to five seconds (a bounded wait on real
// state, not a synchronisation sleep).
func eventuallyOK(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		t := time.NewTimer(10 * time.Millisecond)
		<-t.C
	}
	return cond()
}
