package oauthtest_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

// loopback is a stand-in for a client's loopback redirect listener.
type loopback struct {
	url  string
	mu   sync.Mutex
	hits []url.Values
}

func newLoopback(t *testing.T) *loopback {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &loopback{url: "http://" + ln.Addr().String() + "/callback"}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lb.mu.Lock()
		lb.hits = append(lb.hits, r.URL.Query())
		lb.mu.Unlock()
		w.Write([]byte("ok"))
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return lb
}

func TestAuthorizationCodePKCE(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli")}, IDToken: true})
	api := oauthtest.StartAPI(t, srv, "")
	lb := newLoopback(t)
	ctx := context.Background()
	verifier, challenge := pkce()

	// The browser: authorize, then deliver the callback to the loopback
	// listener on its random port.
	if err := srv.Browse(ctx, authURL(srv, "cli", lb.url, "state-123", challenge, url.Values{"scope": {"openid read"}})); err != nil {
		t.Fatal(err)
	}
	lb.mu.Lock()
	hits := lb.hits
	lb.mu.Unlock()
	if len(hits) != 1 {
		t.Fatalf("callback hits = %d", len(hits))
	}
	cb := hits[0]
	if cb.Get("state") != "state-123" || cb.Get("iss") != srv.Issuer() || cb.Get("code") == "" {
		t.Fatalf("callback params %v", cb)
	}
	code := cb.Get("code")
	exchange := func(code, verifier, redirect string) (string, error) {
		tok, err := tokenReq(t, srv, nil, auth{id: "cli"}, url.Values{"grant_type": {"authorization_code"},
			"code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect}})
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	}
	// A wrong verifier is refused without consuming the code.
	wrong, _ := pkce()
	if _, err := exchange(code, wrong, lb.url); oauthCode(err) != "invalid_grant" {
		t.Errorf("wrong verifier: %v", err)
	}
	if _, err := exchange(code, "", lb.url); oauthCode(err) != "invalid_grant" {
		t.Errorf("missing verifier: %v", err)
	}
	if _, err := exchange(code, verifier, lb.url+"x"); oauthCode(err) != "invalid_grant" {
		t.Errorf("redirect_uri mismatch: %v", err)
	}
	tok, err := tokenReq(t, srv, nil, auth{id: "cli"}, url.Values{"grant_type": {"authorization_code"},
		"code": {code}, "code_verifier": {verifier}, "redirect_uri": {lb.url}})
	if err != nil {
		t.Fatal(err)
	}
	if tokenx.String(tok, tokenx.KeySubject) != oauthtest.DefaultSubject || tok.RefreshToken == "" || tokenx.Scope(tok) != "openid read" {
		t.Errorf("token extras %v", tokenx.Extras(tok))
	}
	if r := callAPI(t, srv, api, tok.AccessToken); r.status != 200 {
		t.Fatalf("API refused the new token: %d", r.status)
	}
	// Replaying the code fails and revokes what it produced.
	if _, err := exchange(code, verifier, lb.url); oauthCode(err) != "invalid_grant" {
		t.Errorf("code replay: %v", err)
	}
	if r := callAPI(t, srv, api, tok.AccessToken); r.status != 401 {
		t.Errorf("token from a replayed code still accepted: %d", r.status)
	}
	if _, err := tokenReq(t, srv, nil, auth{id: "cli"}, refresh(tok.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("refresh token from a replayed code still works: %v", err)
	}
	st := srv.Stats()
	if st.CodeExchanges != 1 || st.CodeReuses != 1 || st.PKCEFailures != 2 || st.FamilyRevocations != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{
		public("cli"),
		{ID: "v6", RedirectURIs: []string{"http://[::1]/cb"}},
		{ID: "web", RedirectURIs: []string{"https://app.example/cb"}},
	}})
	ctx := context.Background()
	_, ch := pkce()
	cb := "http://127.0.0.1:54321/callback"
	cases := []struct {
		name   string
		url    string
		errStr string // expected error param; "" = code expected; "page" = no redirect
	}{
		{"any loopback port", authURL(srv, "cli", cb, "s", ch, nil), ""},
		{"ipv6 loopback any port", authURL(srv, "v6", "http://[::1]:9999/cb", "s", ch, nil), ""},
		{"exact web redirect", authURL(srv, "web", "https://app.example/cb", "s", ch, nil), ""},
		{"web redirect other port", authURL(srv, "web", "https://app.example:444/cb", "s", ch, nil), "page"},
		{"other path", authURL(srv, "cli", "http://127.0.0.1:5/other", "s", ch, nil), "page"},
		{"localhost is not 127.0.0.1", authURL(srv, "cli", "http://localhost:5/callback", "s", ch, nil), "page"},
		{"https loopback", authURL(srv, "cli", "https://127.0.0.1:5/callback", "s", ch, nil), "page"},
		{"unknown client", authURL(srv, "ghost", cb, "s", ch, nil), "page"},
		{"no challenge", authURL(srv, "cli", cb, "s", "", nil), "invalid_request"},
		{"plain method", authURL(srv, "cli", cb, "s", ch, url.Values{"code_challenge_method": {"plain"}}), "invalid_request"},
		{"token response type", authURL(srv, "cli", cb, "s", ch, url.Values{"response_type": {"token"}}), "unsupported_response_type"},
		{"bad resource", authURL(srv, "cli", cb, "s", ch, url.Values{"resource": {"not a uri"}}), "invalid_target"},
	}
	for _, c := range cases {
		loc, err := srv.Authorize(ctx, c.url)
		if c.errStr == "page" {
			if err == nil {
				t.Errorf("%s: redirected to %v", c.name, loc)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		q := loc.Query()
		if q.Get("state") != "s" || q.Get("iss") != srv.Issuer() {
			t.Errorf("%s: state/iss missing: %v", c.name, q)
		}
		if c.errStr == "" && q.Get("code") == "" || c.errStr != "" && q.Get("error") != c.errStr {
			t.Errorf("%s: got %v", c.name, q)
		}
	}
	// iss switched off or replaced; injected error.
	srv.Update(func(c *oauthtest.Config) { c.OmitCallbackIss = true })
	loc, _ := srv.Authorize(ctx, authURL(srv, "cli", cb, "s", ch, nil))
	if loc.Query().Has("iss") {
		t.Error("iss sent although omitted")
	}
	srv.Update(func(c *oauthtest.Config) { c.CallbackIss = "https://evil.example"; c.AuthorizeError = "access_denied" })
	loc, _ = srv.Authorize(ctx, authURL(srv, "cli", cb, "s", ch, nil))
	if loc.Query().Get("iss") != "https://evil.example" || loc.Query().Get("error") != "access_denied" {
		t.Errorf("override: %v", loc.Query())
	}
}

func TestAuthorizationCodeExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, Clients: []oauthtest.Client{public("cli")}})
	v, ch := pkce()
	loc, err := srv.Authorize(context.Background(), authURL(srv, "cli", "http://127.0.0.1:1/callback", "s", ch, nil))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	_, err = tokenReq(t, srv, nil, auth{id: "cli"}, url.Values{"grant_type": {"authorization_code"},
		"code": {loc.Query().Get("code")}, "code_verifier": {v}, "redirect_uri": {"http://127.0.0.1:1/callback"}})
	if oauthCode(err) != "invalid_grant" {
		t.Errorf("expired code: %v", err)
	}
}
