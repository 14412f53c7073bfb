package oauthtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// clock is a manual clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// confidential returns a client_secret_basic client with a canary secret.
func confidential(id string) oauthtest.Client {
	return oauthtest.Client{ID: id, Secret: canary.New("secret")}
}

// public returns a public client with a loopback redirect URI.
func public(id string) oauthtest.Client {
	return oauthtest.Client{ID: id, RedirectURIs: []string{"http://127.0.0.1/callback"}}
}

// rawResp is a response read in full.
type rawResp struct {
	status int
	header http.Header
	body   []byte
}

// do sends req with hc (nil: the server's in-memory transport) and reads
// the response.
func do(t *testing.T, srv *oauthtest.Server, hc *http.Client, req *http.Request) (*rawResp, error) {
	t.Helper()
	if hc == nil {
		hc = &http.Client{Transport: srv.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	if err != nil {
		return nil, err
	}
	return &rawResp{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// auth describes how a test client authenticates.
type auth struct {
	id, secret string
	post       bool   // client_secret_post instead of basic
	assertion  string // private_key_jwt
}

// postForm POSTs a form to path with client authentication.
func postForm(t *testing.T, srv *oauthtest.Server, hc *http.Client, path string, a auth, form url.Values) (*rawResp, error) {
	t.Helper()
	form = cloneValues(form)
	switch {
	case a.assertion != "":
		form.Set("client_assertion_type", oauthwire.ClientAssertionType)
		form.Set("client_assertion", a.assertion)
	case a.secret != "" && a.post:
		form.Set("client_id", a.id)
		form.Set("client_secret", a.secret)
	case a.secret == "":
		form.Set("client_id", a.id)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL(path), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a.secret != "" && !a.post && a.assertion == "" {
		req.Header.Set("Authorization", oauthwire.BasicAuth(a.id, a.secret))
	}
	return do(t, srv, hc, req)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// tokenReq performs a token request and parses the response.
func tokenReq(t *testing.T, srv *oauthtest.Server, hc *http.Client, a auth, form url.Values) (*oauth2.Token, error) {
	t.Helper()
	sent := time.Now()
	r, err := postForm(t, srv, hc, oauthtest.PathToken, a, form)
	if err != nil {
		return nil, err
	}
	return oauthwire.ParseTokenResponse(r.status, r.header, r.body, sent)
}

func mustToken(t *testing.T, srv *oauthtest.Server, hc *http.Client, a auth, form url.Values) *oauth2.Token {
	t.Helper()
	tok, err := tokenReq(t, srv, hc, a, form)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return tok
}

// oauthCode returns the OAuth error code of err ("" if none).
func oauthCode(err error) string {
	var oe *oauthwire.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	return ""
}

func refresh(rt string) url.Values {
	return url.Values{"grant_type": {oauthtest.GrantRefreshToken}, "refresh_token": {rt}}
}

// callAPI calls an API with a bearer token (in memory) and returns the status.
func callAPI(t *testing.T, srv *oauthtest.Server, api *oauthtest.API, tok string) *rawResp {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, api.URL()+"/data", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	r, err := do(t, srv, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pkce returns a verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authURL builds an authorization request URL.
func authURL(srv *oauthtest.Server, clientID, redirect, state, challenge string, extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	for k, vs := range extra {
		q[k] = vs
	}
	return srv.AuthorizeURL() + "?" + q.Encode()
}
