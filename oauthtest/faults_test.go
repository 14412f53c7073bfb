package oauthtest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// TestFaultMatrix injects each response-replacing fault into a refresh and
// checks what the client sees and whether the server processed (rotated)
// the refresh token, over the network and in memory.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		fault     oauthtest.Fault
		status    int    // expected status; 0 = transport error
		ct        string // expected media type prefix
		wantErr   error  // from ParseTokenResponse, or for status 0 the transport error (errors.Is)
		code      string // expected OAuth error code
		processed bool   // the refresh token was rotated
	}{
		{name: "500", fault: oauthtest.Fault{Kind: oauthtest.FaultStatus500}, status: 500, ct: "text/plain"},
		{name: "502 html", fault: oauthtest.Fault{Kind: oauthtest.FaultBadGateway}, status: 502, ct: "text/html"},
		{name: "503 json", fault: oauthtest.Fault{Kind: oauthtest.FaultUnavailable, RetryAfter: "7"}, status: 503, ct: "application/json", code: "temporarily_unavailable"},
		{name: "429", fault: oauthtest.Fault{Kind: oauthtest.FaultRateLimited, RetryAfter: "86400"}, status: 429, ct: "text/plain"},
		{name: "oauth error", fault: oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Code: "invalid_grant"}, status: 400, ct: "application/json", code: "invalid_grant"},
		{name: "oauth error after processing", fault: oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Status: 502, After: true}, status: 502, code: "server_error", ct: "application/json", processed: true},
		{name: "reset", fault: oauthtest.Fault{Kind: oauthtest.FaultReset}, wantErr: syscall.ECONNRESET},
		{name: "response lost", fault: oauthtest.Fault{Kind: oauthtest.FaultResponseLost}, wantErr: syscall.ECONNRESET, processed: true},
		{name: "malformed json", fault: oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON}, status: 200, ct: "application/json", wantErr: oauthwire.ErrMalformedResponse, processed: true},
		{name: "malformed json before", fault: oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON, Before: true}, status: 200, ct: "application/json", wantErr: oauthwire.ErrMalformedResponse},
		{name: "wrong content type", fault: oauthtest.Fault{Kind: oauthtest.FaultWrongContentType}, status: 200, ct: "text/html", processed: true},
		{name: "html page", fault: oauthtest.Fault{Kind: oauthtest.FaultHTMLPage}, status: 200, ct: "text/html", wantErr: oauthwire.ErrUnexpectedContentType},
		{name: "redirect 302", fault: oauthtest.Fault{Kind: oauthtest.FaultRedirect, Status: 302}, status: 302, ct: "text/plain"},
		{name: "redirect 307", fault: oauthtest.Fault{Kind: oauthtest.FaultRedirect}, status: 307, ct: "text/plain"},
	}
	for _, c := range cases {
		for _, mode := range []string{"network", "memory"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				srv := oauthtest.Start(t, oauthtest.Config{})
				var hc *http.Client
				if mode == "network" {
					hc = srv.HTTPClient()
				}
				tok, _ := srv.Mint(oauthtest.Grant{})
				f := c.fault
				f.Endpoint, f.Grant, f.Times = oauthtest.EndpointToken, oauthtest.GrantRefreshToken, 1
				srv.InjectFault(f)
				sent := time.Now()
				r, err := postForm(t, srv, hc, oauthtest.PathToken, auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken))
				if c.status == 0 {
					if err == nil || !errors.Is(err, c.wantErr) {
						t.Fatalf("err = %v, want %v", err, c.wantErr)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					if r.status != c.status || !strings.HasPrefix(r.header.Get("Content-Type"), c.ct) {
						t.Fatalf("got %d %q, want %d %q", r.status, r.header.Get("Content-Type"), c.status, c.ct)
					}
					_, perr := oauthwire.ParseTokenResponse(r.status, r.header, r.body, sent)
					switch {
					case c.wantErr != nil && !errors.Is(perr, c.wantErr):
						t.Errorf("parse: %v, want %v", perr, c.wantErr)
					case c.code != "" && oauthCode(perr) != c.code:
						t.Errorf("code %q, want %q", oauthCode(perr), c.code)
					case c.wantErr == nil && c.code == "" && c.status == 200 && perr != nil:
						t.Errorf("parse: %v", perr)
					}
					if f.RetryAfter != "" && r.header.Get("Retry-After") != f.RetryAfter {
						t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
					}
					if c.status == 302 || c.status == 307 {
						if loc := r.header.Get("Location"); loc != srv.Trap().URL()+oauthtest.PathToken {
							t.Errorf("Location %q", loc)
						}
					}
				}
				info, _ := srv.Introspect(tok.RefreshToken)
				if info.Rotated != c.processed {
					t.Errorf("rotated = %v, want %v", info.Rotated, c.processed)
				}
				st := srv.Stats()
				if st.Faults[f.Kind] != 1 || st.TokenPosts != 1 || st.RefreshTokensPresented != 1 {
					t.Errorf("stats %+v", st)
				}
				// The fault fired once: the next request is normal (with a
				// fresh token when the first one was consumed).
				rt := tok.RefreshToken
				if c.processed {
					m, _ := srv.Mint(oauthtest.Grant{})
					rt = m.RefreshToken
				}
				if _, err := tokenReq(t, srv, hc, auth{id: oauthtest.DefaultClientID}, refresh(rt)); err != nil {
					t.Errorf("after the fault: %v", err)
				}
			})
		}
	}
}

func TestFaultTimesAndMatching(t *testing.T) {
	t.Parallel()
	job := confidential("job")
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{job, public("cli")}})
	a := auth{id: job.ID, secret: job.Secret}
	cc := url.Values{"grant_type": {"client_credentials"}}
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantClientCredentials, Times: 2})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation}) // always
	// Other grants and endpoints are not affected.
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "cli"})
	mustToken(t, srv, nil, auth{id: "cli"}, refresh(m.RefreshToken))
	for i := range 2 {
		if _, err := tokenReq(t, srv, nil, a, cc); oauthCode(err) != "temporarily_unavailable" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	mustToken(t, srv, nil, a, cc)
	for range 3 {
		if r, _ := postForm(t, srv, nil, oauthtest.PathRevocation, auth{id: "cli"}, url.Values{"token": {"x"}}); r.status != 500 {
			t.Fatalf("revocation fault: %d", r.status)
		}
	}
	if srv.PendingFaults() != 1 {
		t.Errorf("PendingFaults = %d", srv.PendingFaults())
	}
	srv.ClearFaults()
	if r, _ := postForm(t, srv, nil, oauthtest.PathRevocation, auth{id: "cli"}, url.Values{"token": {"x"}}); r.status != 200 {
		t.Errorf("after ClearFaults: %d", r.status)
	}
	st := srv.Stats()
	if st.TokenPosts != 4 || st.Grants[oauthtest.GrantClientCredentials] != 3 || st.Requests[oauthtest.EndpointRevocation] != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultHang(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	hc := srv.HTTPClient()

	// Released by the test: the request is then processed normally.
	release := make(chan struct{})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Times: 1, Release: release})
	tok, _ := srv.Mint(oauthtest.Grant{})
	done := make(chan error, 1)
	go func() {
		_, err := tokenReq(t, srv, hc, auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken))
		done <- err
	}()
	waitFor(t, func() bool { return srv.Stats().Requests[oauthtest.EndpointToken] == 1 })
	if info, _ := srv.Introspect(tok.RefreshToken); info.Rotated {
		t.Fatal("held request was processed")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("released request: %v", err)
	}

	// Abandoned by the client: its context ends the request, nothing is
	// processed.
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken})
	m, _ := srv.Mint(oauthtest.Grant{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.TokenURL(), strings.NewReader(url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {m.RefreshToken}, "client_id": {oauthtest.DefaultClientID}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned: %v", err)
	}
	if info, _ := srv.Introspect(m.RefreshToken); info.Rotated {
		t.Error("abandoned hung request was processed")
	}
	// ReleaseHangs lets the held request through (the fault stays).
	go func() {
		_, err := tokenReq(t, srv, hc, auth{id: oauthtest.DefaultClientID}, refresh(m.RefreshToken))
		done <- err
	}()
	waitFor(t, func() bool { return srv.Stats().Requests[oauthtest.EndpointToken] == 3 })
	srv.ReleaseHangs()
	if err := <-done; err != nil {
		t.Fatalf("after ReleaseHangs: %v", err)
	}
}

func TestFaultHangInMemoryEndsWithContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true})
		srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL(oauthtest.PathOAuthDiscovery), nil)
		_, err := srv.Transport().RoundTrip(req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 30*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
		synctest.Wait() // the handler goroutine has returned
	})
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true})
		srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultDelay, Endpoint: oauthtest.EndpointToken, Delay: 200 * time.Millisecond})
		srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultDelay, Endpoint: oauthtest.EndpointToken, Delay: 100 * time.Millisecond, Times: 1})
		tok, _ := srv.Mint(oauthtest.Grant{})
		for i, want := range []time.Duration{300 * time.Millisecond, 200 * time.Millisecond} {
			start := time.Now()
			tok = mustToken(t, srv, nil, auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken))
			if got := time.Since(start); got != want {
				t.Errorf("request %d took %v, want %v", i, got, want)
			}
		}
	})
}

func TestFaultHugeBody(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHugeBody, Endpoint: oauthtest.EndpointToken}) // 1 GiB
	for _, hc := range []*http.Client{srv.HTTPClient(), {Transport: srv.Transport()}} {
		resp, err := hc.Post(srv.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
		resp.Body.Close() // the server stops streaming
		if err != nil || len(body) != oauthwire.MaxBody+1 || resp.ContentLength != -1 {
			t.Fatalf("read %d bytes, %v, length %d", len(body), err, resp.ContentLength)
		}
		if _, err := oauthwire.ParseTokenResponse(resp.StatusCode, resp.Header, body, time.Now()); !errors.Is(err, oauthwire.ErrBodyTooLarge) {
			t.Errorf("parse: %v", err)
		}
	}
	srv.ClearFaults()
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHugeBody, Size: 100})
	r, _ := postForm(t, srv, nil, oauthtest.PathToken, auth{id: "x"}, nil)
	if len(r.body) != 100 {
		t.Errorf("sized body %d", len(r.body))
	}
}

func TestRedirectFaultFollowedReachesTrap(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRedirect, Endpoint: oauthtest.EndpointToken, Times: 1})
	tok, _ := srv.Mint(oauthtest.Grant{})
	// A careless client that follows redirects replays the refresh token
	// to another origin; the trap records it.
	hc := srv.HTTPClient()
	hc.CheckRedirect = nil
	form := refresh(tok.RefreshToken)
	form.Set("client_id", oauthtest.DefaultClientID)
	resp, err := hc.Post(srv.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := srv.Trap().Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPost || !strings.Contains(reqs[0].Body, tok.RefreshToken) {
		t.Fatalf("trap saw %+v", reqs)
	}
}

func TestResetNextConnections(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	for _, hc := range []*http.Client{srv.HTTPClient(), {Transport: srv.Transport()}} {
		srv.ResetNextConnections(1)
		req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathOAuthDiscovery), nil)
		if _, err := do(t, srv, hc, req); err == nil {
			t.Fatal("reset connection answered")
		}
		req, _ = http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathOAuthDiscovery), nil)
		if r, err := do(t, srv, hc, req); err != nil || r.status != 200 {
			t.Fatalf("next connection: %v", err)
		}
	}
	if got := srv.Stats().Requests[oauthtest.EndpointDiscovery]; got != 2 {
		t.Errorf("reset requests reached the handler: %d", got)
	}
}

// waitFor yields until cond holds (the server counts a request when it
// arrives, before any fault holds it), failing after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
	}
}
