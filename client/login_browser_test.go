package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
)

// The authorization URL is printed for the user to open by hand. Its
// endpoint comes from the server, so what is printed (and opened, the same
// string) is percent-encoded printable ASCII: a bidi override in the
// endpoint's path or query reaches neither the terminal nor the browser
// raw, and still means the same URL.
func TestAuthorizationURLShownSafely(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.config()
	cfg.Issuer = ""
	cfg.Endpoints = Endpoints{AuthURL: e.as.URL(oauthtest.PathAuthorize + "\u202e?tenant=\u202eabc&p"), TokenURL: e.as.TokenURL()}
	var prompt syncBuffer
	cfg.Prompt = &prompt
	ctx, cancel := context.WithCancel(t.Context())
	opened := make(chan string, 1)
	cfg.OpenBrowser = func(u string) error { opened <- u; cancel(); return nil }
	c := mustNew(t, cfg)
	if err := c.Login(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Login = %v, want context.Canceled", err)
	}
	u := <-opened
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f {
			t.Fatalf("the authorization URL holds byte %#x: %q", u[i], u)
		}
	}
	if !strings.Contains(prompt.String(), "\n  "+u+"\n") {
		t.Fatalf("the prompt does not show the URL that was opened:\n%q\nopened %q", prompt.String(), u)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if q := pu.Query(); pu.Path != oauthtest.PathAuthorize+"\u202e" || q.Get("tenant") != "\u202eabc" || !q.Has("p") || q.Get("response_type") != "code" {
		t.Fatalf("the authorization URL %q lost the endpoint's path or query", u)
	}
}

// The callback is checked: a missing code, a second callback and an error
// callback are rejected; the listener is closed on every exit path, so no
// later request reaches a finished login; it never binds a non-loopback
// address, where the network could reach it. (A wrong or missing state does not end the login: the request is
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
			e := newFixture(t, oauthtest.Config{})
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
		e := newFixture(t, oauthtest.Config{})
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
		e := newFixture(t, oauthtest.Config{})
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
		e := newFixture(t, oauthtest.Config{})
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
			e := newFixture(t, oauthtest.Config{})
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
		e := newFixture(t, oauthtest.Config{})
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

// An OpenBrowser that never returns does not hold the login past its
// timeout.
func TestBlockingBrowserOpener(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
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

// The listener is closed after a successful login and after a failed code
// exchange, and the browser gets its page.
func TestListenerClosedAfterSuccessAndExchangeFailure(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		e := newFixture(t, oauthtest.Config{})
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
