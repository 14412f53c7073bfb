package client

import (
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

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
)

// forgedCall is a request someone other than the browser sends to the login
// listener, built from the real redirect (whose state it must not know,
// unless the case is about a request that is wrong in another way).
type forgedCall struct {
	name   string
	method string
	// target returns the request's URL from the real callback URL.
	target func(real *url.URL) string
	body   string
	status int // the status the listener must answer
	// mayReset: the request may fail instead (the server answers an
	// oversized request and closes before reading it all, so the reply
	// can be lost to a reset on a loaded machine).
	mayReset bool
}

// withQuery returns the real callback URL with its query changed by f.
func withQuery(real *url.URL, f func(q url.Values)) string {
	u := *real
	q := u.Query()
	f(q)
	u.RawQuery = q.Encode()
	return u.String()
}

func forgedCalls() []forgedCall {
	const forgedCode = "forged-code"
	return []forgedCall{
		{name: "wrong state", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("code", forgedCode); q.Set("state", "x"+q.Get("state")) })
		}, status: http.StatusBadRequest},
		{name: "no state", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("code", forgedCode); q.Del("state") })
		}, status: http.StatusBadRequest},
		{name: "empty state", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("code", forgedCode); q.Set("state", "") })
		}, status: http.StatusBadRequest},
		{name: "wrong then right state", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("code", forgedCode); q["state"] = []string{"wrong", q.Get("state")} })
		}, status: http.StatusBadRequest},
		{name: "right state twice", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q["state"] = []string{q.Get("state"), q.Get("state")} })
		}, status: http.StatusBadRequest},
		{name: "forged denial", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Del("code"); q.Set("error", "access_denied"); q.Set("state", "wrong") })
		}, status: http.StatusBadRequest},
		{name: "forged wrong iss", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("iss", "https://evil.example"); q.Set("state", "wrong") })
		}, status: http.StatusBadRequest},
		{name: "HEAD with the real query", method: http.MethodHead, target: func(r *url.URL) string { return r.String() }, status: http.StatusMethodNotAllowed},
		{name: "POST with the real query", method: http.MethodPost, target: func(r *url.URL) string { return r.String() }, status: http.StatusMethodNotAllowed},
		{name: "POST form", method: http.MethodPost, target: func(r *url.URL) string {
			u := *r
			u.RawQuery = ""
			return u.String()
		}, body: "code=" + forgedCode + "&state=wrong", status: http.StatusMethodNotAllowed},
		{name: "another path", target: func(r *url.URL) string {
			u := *r
			u.Path = "/other"
			return u.String()
		}, status: http.StatusNotFound},
		{name: "trailing slash", target: func(r *url.URL) string {
			u := *r
			u.Path = callbackPath + "/"
			return u.String()
		}, status: http.StatusNotFound},
		{name: "huge request line", target: func(r *url.URL) string {
			return withQuery(r, func(q url.Values) { q.Set("state", strings.Repeat("A", 64<<10)) })
		}, status: http.StatusRequestHeaderFieldsTooLarge, mayReset: true},
	}
}

// send makes one request to the login listener as a process on the same
// machine could, and returns the status and the page.
func send(ctx context.Context, method, target, body string) (int, string, error) {
	if method == "" {
		method = http.MethodGet
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		// Without the URL, which holds the state and the code.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(page), nil
}

// A request to the login listener that does not carry this login's state
// (or is not a GET of the callback path) is answered with an error page and
// ignored: it neither ends the login nor takes the place of the real
// callback, which then completes the login with exactly one code exchange.
// The pages and the log never show the state or the code.
func TestForgedCallbacksIgnored(t *testing.T) {
	t.Parallel()
	for _, fc := range forgedCalls() {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{})
			cfg := e.config()
			type outcome struct {
				status, realStatus int
				page               string
				state, code        string
				err                error
			}
			done := make(chan outcome, 1)
			cfg.OpenBrowser = func(u string) error {
				go func() {
					var o outcome
					defer func() { done <- o }()
					redirect, err := e.as.Authorize(context.Background(), u)
					if err != nil {
						o.err = err
						return
					}
					o.state, o.code = redirect.Query().Get("state"), redirect.Query().Get("code")
					o.status, o.page, o.err = send(context.Background(), fc.method, fc.target(redirect), fc.body)
					if o.err != nil && !fc.mayReset {
						return
					}
					o.realStatus, _, o.err = send(context.Background(), http.MethodGet, redirect.String(), "")
				}()
				return nil
			}
			c := mustNew(t, cfg)
			err := c.Login(t.Context())
			o := <-done
			if o.err != nil {
				t.Fatalf("browser: %v", o.err)
			}
			if o.status != fc.status && !(fc.mayReset && o.status == 0) {
				t.Errorf("the forged request got HTTP %d, want %d", o.status, fc.status)
			}
			if err != nil {
				t.Fatalf("Login after a forged request = %v, want success", err)
			}
			if o.realStatus != http.StatusOK {
				t.Errorf("the real callback got HTTP %d, want 200", o.realStatus)
			}
			if n := e.as.Stats().CodeExchanges; n != 1 {
				t.Errorf("%d code exchanges, want 1", n)
			}
			if f := canary.Find(o.page+e.log.String(), o.state, o.code); len(f) > 0 {
				t.Errorf("a page or the log shows the state or the code: %q\nlog:\n%s", o.page, e.log.String())
			}
			if o.status == http.StatusBadRequest && !strings.Contains(o.page, "ignored") {
				t.Errorf("the forged request's page does not say it was ignored: %q", o.page)
			}
			// The server itself refuses an oversized request before the
			// handler sees it; everything else reaches the handler's log.
			if fc.status != http.StatusRequestHeaderFieldsTooLarge && !strings.Contains(e.log.String(), "ignored a request") {
				t.Errorf("the ignored request was not logged:\n%s", e.log.String())
			}
		})
	}
}

// Forged requests keep the login waiting; the real callback that carries an
// error still ends it with its typed error, and no code is exchanged.
func TestRealErrorCallbackAfterForgedOnes(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		tamper func(q url.Values)
		want   error
	}{
		"denied":    {func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }, ErrAccessDenied},
		"wrong iss": {func(q url.Values) { q.Set("iss", "https://evil.example") }, ErrIssuerMismatch},
		"no code":   {func(q url.Values) { q.Del("code") }, ErrCallbackRejected},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{})
			cfg := e.config()
			statuses := make(chan []int, 1)
			cfg.OpenBrowser = func(u string) error {
				go func() {
					var got []int
					defer func() { statuses <- got }()
					redirect, err := e.as.Authorize(context.Background(), u)
					if err != nil {
						t.Error(err)
						return
					}
					forged := withQuery(redirect, func(q url.Values) { q.Set("state", "wrong") })
					real := withQuery(redirect, tc.tamper)
					for _, target := range []string{forged, real} {
						s, _, err := send(context.Background(), http.MethodGet, target, "")
						if err != nil {
							t.Error(err)
							return
						}
						got = append(got, s)
					}
				}()
				return nil
			}
			c := mustNew(t, cfg)
			err := c.Login(t.Context())
			got := <-statuses
			if !errors.Is(err, tc.want) {
				t.Fatalf("Login = %v, want %v", err, tc.want)
			}
			if want := []int{http.StatusBadRequest, http.StatusBadRequest}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("statuses %v, want %v (forged ignored, real one rejected with its error)", got, want)
			}
			if n := e.as.Stats().Grants[oauthtest.GrantAuthorizationCode]; n != 0 {
				t.Fatalf("%d code exchanges, want 0", n)
			}
		})
	}
}

// A flood of forged requests, many at once, costs the login nothing: every
// one is answered, the real callback still completes the login with one
// code exchange, and the log holds a bounded number of lines about them.
func TestForgedCallbackFlood(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.config()
	const workers, each = 8, 40
	type outcome struct {
		bad, other int
		realStatus int
		err        error
	}
	done := make(chan outcome, 1)
	cfg.OpenBrowser = func(u string) error {
		go func() {
			var o outcome
			defer func() { done <- o }()
			redirect, err := e.as.Authorize(context.Background(), u)
			if err != nil {
				o.err = err
				return
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						target := withQuery(redirect, func(q url.Values) { q.Set("state", fmt.Sprintf("guess-%d-%d", w, i)) })
						s, _, err := send(context.Background(), http.MethodGet, target, "")
						mu.Lock()
						if err == nil && s == http.StatusBadRequest {
							o.bad++
						} else {
							o.other++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			o.realStatus, _, o.err = send(context.Background(), http.MethodGet, redirect.String(), "")
		}()
		return nil
	}
	c := mustNew(t, cfg)
	err := c.Login(t.Context())
	o := <-done
	if o.err != nil {
		t.Fatalf("browser: %v", o.err)
	}
	if err != nil {
		t.Fatalf("Login after %d forged requests = %v", workers*each, err)
	}
	if o.bad != workers*each || o.realStatus != http.StatusOK {
		t.Fatalf("%d forged requests answered 400, %d otherwise, real callback %d; want %d, 0, 200", o.bad, o.other, o.realStatus, workers*each)
	}
	if n := e.as.Stats().CodeExchanges; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
	if n := strings.Count(e.log.String(), "ignored a request"); n > maxIgnoredLogged {
		t.Fatalf("%d log lines about ignored requests, want at most %d", n, maxIgnoredLogged)
	}
}

// fakeListener hands out the connections queued on conns.
type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// Accept returns the next queued connection, or an error once closed.
func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close makes Accept fail.
func (l *fakeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// Addr is a loopback address.
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// The login listener serves a bounded number of connections at once: the
// next one is taken only when one closes (closing twice frees one place),
// and Close ends an Accept that waits for a place.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		fl := &fakeListener{conns: make(chan net.Conn, 4), closed: make(chan struct{})}
		lim := newLimitListener(fl, 2)
		accepted := make(chan net.Conn, 4)
		go func() {
			defer close(accepted)
			for {
				c, err := lim.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		for range 4 {
			a, b := net.Pipe()
			defer b.Close()
			fl.conns <- a
		}
		synctest.Wait()
		if n := len(accepted); n != 2 {
			t.Fatalf("%d connections accepted with a limit of 2", n)
		}
		first := <-accepted
		first.Close()
		first.Close()
		synctest.Wait()
		if n := len(accepted); n != 2 {
			t.Fatalf("after one connection closed (twice): %d more accepted, want 1", n-1)
		}
		lim.Close()
		synctest.Wait()
		n := 0
		for c := range accepted { // ends when Accept has returned an error
			c.Close()
			n++
		}
		if n != 2 {
			t.Fatalf("%d connections left, want 2", n)
		}
	})
}
