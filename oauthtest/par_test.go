package oauthtest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
)

// parForm is the form of a valid pushed authorization request of a
// loopback client.
func parForm(redirect, challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "redirect_uri": {redirect}, "state": {"st-1"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "login_hint": {"ada@example.com"}}
}

// push sends a pushed authorization request and returns its request_uri
// and expires_in.
func push(t *testing.T, srv *oauthtest.Server, a auth, form url.Values) (string, int) {
	t.Helper()
	r, err := postForm(t, srv, nil, oauthtest.PathPAR, a, form)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusCreated {
		t.Fatalf("PAR: HTTP %d %s", r.status, r.body)
	}
	var body struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int    `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	return body.RequestURI, body.ExpiresIn
}

// byRequestURI is the browser's authorization request for a pushed one.
func byRequestURI(srv *oauthtest.Server, clientID, uri string) string {
	return srv.AuthorizeURL() + "?" + url.Values{"client_id": {clientID}, "request_uri": {uri}}.Encode()
}

// A pushed request: 201 with a request_uri of the RFC's form; the browser
// names it with client_id alone, the server redirects with a code whose
// exchange works, and the same request_uri is refused the second time.
func TestPARRoundTrip(t *testing.T) {
	t.Parallel()
	c := confidential("web")
	c.RedirectURIs = []string{"http://127.0.0.1/callback"}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{c}, InMemory: true})
	a := auth{id: "web", secret: c.Secret}
	ctx := context.Background()
	redirect := "http://127.0.0.1:4242/callback"
	verifier, challenge := pkce()

	uri, exp := push(t, srv, a, parForm(redirect, challenge))
	if !strings.HasPrefix(uri, oauthtest.RequestURIPrefix) || len(uri) <= len(oauthtest.RequestURIPrefix)+16 || exp != 60 {
		t.Fatalf("request_uri %q, expires_in %d", uri, exp)
	}
	loc, err := srv.Authorize(ctx, byRequestURI(srv, "web", uri))
	if err != nil {
		t.Fatal(err)
	}
	cb := loc.Query()
	if cb.Get("code") == "" || cb.Get("state") != "st-1" || !strings.HasPrefix(loc.String(), redirect) {
		t.Fatalf("redirect %s", loc.Redacted())
	}
	mustToken(t, srv, nil, a, url.Values{"grant_type": {oauthtest.GrantAuthorizationCode}, "code": {cb.Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}})

	if _, err := srv.Authorize(ctx, byRequestURI(srv, "web", uri)); err == nil {
		t.Error("a request_uri was accepted twice")
	}
	st := srv.Stats()
	if st.PushedRequests != 1 || st.Requests[oauthtest.EndpointPAR] != 1 {
		t.Errorf("PushedRequests = %d, Requests[par] = %d", st.PushedRequests, st.Requests[oauthtest.EndpointPAR])
	}

	// The records: the PAR POST carried the parameters (credentials and
	// one-time values hidden); the browser's requests carried two.
	pars := srv.EndpointRequests(oauthtest.EndpointPAR)
	if len(pars) != 1 || pars[0].Params.Get("login_hint") != "ada@example.com" || pars[0].Params.Get("state") != "REDACTED" {
		t.Errorf("PAR records %v", pars)
	}
	for _, rq := range srv.EndpointRequests(oauthtest.EndpointAuthorize) {
		if keys := slices.Sorted(func(yield func(string) bool) {
			for k := range rq.Params {
				if !yield(k) {
					return
				}
			}
		}); !slices.Equal(keys, []string{"client_id", "request_uri"}) {
			t.Errorf("the browser sent %v", keys)
		}
	}
}

// A request_uri expires, and only its client may use it.
func TestPARExpiryAndClient(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli"), public("other")}, InMemory: true, Now: clk.Now, PARLifetime: 30 * time.Second})
	_, challenge := pkce()
	ctx := context.Background()
	a := auth{id: "cli"}
	uri, exp := push(t, srv, a, parForm("http://127.0.0.1:1/callback", challenge))
	if exp != 30 {
		t.Errorf("expires_in = %d, want 30", exp)
	}
	if _, err := srv.Authorize(ctx, byRequestURI(srv, "other", uri)); err == nil {
		t.Error("another client's request_uri was accepted")
	}
	clk.Advance(31 * time.Second)
	if _, err := srv.Authorize(ctx, byRequestURI(srv, "cli", uri)); err == nil {
		t.Error("an expired request_uri was accepted")
	}
}

// The PAR endpoint authenticates the client as the token endpoint does and
// checks what /authorize checks; it refuses a request_uri inside a push.
func TestPARRefusals(t *testing.T) {
	t.Parallel()
	c := confidential("web")
	c.RedirectURIs = []string{"http://127.0.0.1/callback"}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{c}, InMemory: true})
	_, challenge := pkce()
	good := parForm("http://127.0.0.1:1/callback", challenge)
	with := func(k, v string) url.Values {
		f := cloneValues(good)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		a      auth
		form   url.Values
		status int
		code   string
	}{
		{"wrong secret", auth{id: "web", secret: "nope"}, good, 401, "invalid_client"},
		{"no authentication", auth{id: "web"}, good, 401, "invalid_client"},
		{"no PKCE", auth{id: "web", secret: c.Secret}, with("code_challenge", ""), 400, "invalid_request"},
		{"foreign redirect", auth{id: "web", secret: c.Secret}, with("redirect_uri", "https://evil.example/cb"), 400, "invalid_request"},
		{"request_uri inside", auth{id: "web", secret: c.Secret}, with("request_uri", oauthtest.RequestURIPrefix+"x"), 400, "invalid_request"},
		{"response_type", auth{id: "web", secret: c.Secret}, with("response_type", "token"), 400, "unsupported_response_type"},
	} {
		r, err := postForm(t, srv, nil, oauthtest.PathPAR, tc.a, tc.form)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(r.body, &body)
		if r.status != tc.status || body.Error != tc.code {
			t.Errorf("%s: HTTP %d %q, want %d %q", tc.name, r.status, body.Error, tc.status, tc.code)
		}
	}
	if n := srv.Stats().PushedRequests; n != 0 {
		t.Errorf("PushedRequests = %d after refusals only", n)
	}
	for _, rq := range srv.EndpointRequests(oauthtest.EndpointPAR) {
		if v := rq.Params.Get("client_secret"); v != "" && v != "REDACTED" {
			t.Errorf("a record shows the client secret")
		}
	}
}

// RequirePAR: discovery says so, and /authorize refuses a request that
// carries its parameters itself, with an error redirected to the client.
func TestRequirePAR(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli")}, InMemory: true, RequirePAR: true})
	r, err := do(t, srv, nil, mustReq(t, srv.URL(oauthtest.PathOAuthDiscovery)))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["pushed_authorization_request_endpoint"] != srv.PARURL() || doc["require_pushed_authorization_requests"] != true {
		t.Errorf("discovery: %v", doc)
	}
	_, challenge := pkce()
	loc, err := srv.Authorize(context.Background(), authURL(srv, "cli", "http://127.0.0.1:1/callback", "s", challenge, nil))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Errorf("a request without PAR was answered %s", loc.Redacted())
	}
	uri, _ := push(t, srv, auth{id: "cli"}, parForm("http://127.0.0.1:1/callback", challenge))
	loc, err = srv.Authorize(context.Background(), byRequestURI(srv, "cli", uri))
	if err != nil || loc.Query().Get("code") == "" {
		t.Errorf("a pushed request was refused: %v", err)
	}
}

// NoSession: prompt=none is answered login_required; without prompt=none
// the login goes through.
func TestNoSessionPromptNone(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli")}, InMemory: true, NoSession: true})
	_, challenge := pkce()
	ctx := context.Background()
	loc, err := srv.Authorize(ctx, authURL(srv, "cli", "http://127.0.0.1:1/callback", "s", challenge, url.Values{"prompt": {"none"}}))
	if err != nil || loc.Query().Get("error") != "login_required" {
		t.Errorf("prompt=none: %v %v", loc, err)
	}
	loc, err = srv.Authorize(ctx, authURL(srv, "cli", "http://127.0.0.1:1/callback", "s", challenge, nil))
	if err != nil || loc.Query().Get("code") == "" {
		t.Errorf("without prompt=none: %v %v", loc, err)
	}
}

func mustReq(t *testing.T, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
