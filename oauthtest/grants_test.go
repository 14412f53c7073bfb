package oauthtest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestDiscovery(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli"), confidential("job")}})
	hc := srv.HTTPClient()
	for _, path := range []string{oauthwire.WellKnownOAuth, oauthwire.WellKnownOpenID} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL(path), nil)
		r, err := do(t, srv, hc, req)
		if err != nil {
			t.Fatal(err)
		}
		d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := &oauthwire.Discovery{
			Issuer:                                     srv.Issuer(),
			AuthorizationEndpoint:                      srv.AuthorizeURL(),
			TokenEndpoint:                              srv.TokenURL(),
			DeviceAuthorizationEndpoint:                srv.DeviceAuthorizationURL(),
			RevocationEndpoint:                         srv.RevocationURL(),
			UserinfoEndpoint:                           srv.URL(oauthtest.PathUserinfo),
			TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic"},
			CodeChallengeMethodsSupported:              []string{"S256"},
			GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials", oauthtest.GrantDeviceCode},
			ResponseTypesSupported:                     []string{"code"},
			AuthorizationResponseIssParameterSupported: true,
		}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
	if got := srv.Stats().Requests[oauthtest.EndpointDiscovery]; got != 2 {
		t.Errorf("discovery requests = %d", got)
	}

	// Mismatched issuer, disabled endpoints, omitted iss support.
	srv.Update(func(c *oauthtest.Config) {
		c.DiscoveryIssuer = srv.Issuer() + "/"
		c.DisabledEndpoints = []string{oauthtest.EndpointRevocation}
		c.OmitCallbackIss = true
	})
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthwire.WellKnownOpenID), nil)
	r, _ := do(t, srv, hc, req)
	if _, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()); !errors.Is(err, oauthwire.ErrIssuerMismatch) {
		t.Errorf("mismatched issuer: %v", err)
	}
	d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()+"/")
	if err != nil || d.RevocationEndpoint != "" || d.AuthorizationResponseIssParameterSupported {
		t.Errorf("disabled revocation still advertised: %+v %v", d, err)
	}
	r, _ = postForm(t, srv, hc, oauthtest.PathRevocation, auth{id: "cli"}, url.Values{"token": {"x"}})
	if r.status != http.StatusNotFound {
		t.Errorf("disabled endpoint answered %d", r.status)
	}
}

// OIDCDiscoveryOnly: the RFC 8414 path answers 404, the OpenID Connect one
// the document; Stats.Discovery counts each path, 404s included.
func TestOIDCDiscoveryOnly(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{OIDCDiscoveryOnly: true})
	get := func(path string) *rawResp {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL(path), nil)
		r, err := do(t, srv, nil, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := get(oauthwire.WellKnownOAuth); r.status != http.StatusNotFound {
		t.Fatalf("RFC 8414 path answered %d, want 404", r.status)
	}
	r := get(oauthwire.WellKnownOpenID)
	if d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()); r.status != http.StatusOK || err != nil || d.TokenEndpoint != srv.TokenURL() {
		t.Fatalf("OpenID Connect path: status %d, %+v, %v", r.status, d, err)
	}
	get(oauthwire.WellKnownOpenID)
	want := map[string]int{oauthwire.WellKnownOAuth: 1, oauthwire.WellKnownOpenID: 2}
	if diff := cmp.Diff(want, srv.Stats().Discovery); diff != "" {
		t.Errorf("Stats.Discovery (-want +got):\n%s", diff)
	}
	srv.ResetStats()
	if err := srv.Update(func(c *oauthtest.Config) { c.OIDCDiscoveryOnly = false }); err != nil {
		t.Fatal(err)
	}
	if r := get(oauthwire.WellKnownOAuth); r.status != http.StatusOK {
		t.Fatalf("RFC 8414 path answered %d without OIDCDiscoveryOnly", r.status)
	}
	if diff := cmp.Diff(map[string]int{oauthwire.WellKnownOAuth: 1}, srv.Stats().Discovery); diff != "" {
		t.Errorf("Stats.Discovery after ResetStats (-want +got):\n%s", diff)
	}
}

func TestClientAuthentication(t *testing.T) {
	t.Parallel()
	basic, post := confidential("basic"), confidential("post")
	post.AuthMethod = oauthtest.AuthClientSecretPost
	special := oauthtest.Client{ID: "a b:c", Secret: "p@ss:w%rd+/=", AuthMethod: oauthtest.AuthClientSecretBasic}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{basic, post, special, public("pub")}})
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := []struct {
		name string
		a    auth
		code string // "" = success
	}{
		{"basic", auth{id: "basic", secret: basic.Secret}, ""},
		{"basic with special characters", auth{id: special.ID, secret: special.Secret}, ""},
		{"post", auth{id: "post", secret: post.Secret, post: true}, ""},
		{"basic client sends post (O-08 fallback)", auth{id: "basic", secret: basic.Secret, post: true}, "invalid_client"},
		{"post client sends basic", auth{id: "post", secret: post.Secret}, "invalid_client"},
		{"wrong secret", auth{id: "basic", secret: "nope"}, "invalid_client"},
		{"unknown client", auth{id: "ghost", secret: "x"}, "invalid_client"},
		{"no authentication", auth{id: "basic"}, "invalid_client"},
		{"public client, client credentials", auth{id: "pub"}, "unauthorized_client"},
	}
	for _, c := range cases {
		tok, err := tokenReq(t, srv, nil, c.a, cc)
		if c.code == "" {
			if err != nil || tok.AccessToken == "" {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if got := oauthCode(err); got != c.code {
			t.Errorf("%s: code %q (%v), want %q", c.name, got, err, c.code)
		}
	}
	// Two methods at once.
	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {basic.Secret}}
	if _, err := tokenReq(t, srv, nil, auth{id: "basic", secret: basic.Secret}, form); oauthCode(err) != "invalid_request" {
		t.Errorf("two methods: %v", err)
	}
	// A 401 for a basic attempt carries WWW-Authenticate: Basic.
	r, _ := postForm(t, srv, nil, oauthtest.PathToken, auth{id: "basic", secret: "nope"}, cc)
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("401 headers: %d %v", r.status, r.header)
	}
	if got := srv.Stats().ClientAuthFailures; got != 7 {
		t.Errorf("ClientAuthFailures = %d, want 7", got)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, Clients: []oauthtest.Client{
		{ID: "rsa", PublicKey: &rsaKey.PublicKey},
		{ID: "ec", PublicKey: &ecKey.PublicKey},
	}})
	cc := url.Values{"grant_type": {"client_credentials"}}
	assert := func(key crypto.Signer, id, aud string, now time.Time) string {
		a, err := oauthwire.ClientAssertion(key, "", id, aud, now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, c := range []struct {
		name, id string
		key      crypto.Signer
	}{{"rsa", "rsa", rsaKey}, {"ec", "ec", ecKey}} {
		a := assert(c.key, c.id, srv.TokenURL(), clk.Now())
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); oauthCode(err) != "invalid_client" {
			t.Errorf("%s: replayed jti accepted: %v", c.name, err)
		}
		if _, err := tokenReq(t, srv, nil, auth{assertion: assert(c.key, c.id, srv.Issuer(), clk.Now())}, cc); err != nil {
			t.Errorf("%s: issuer as audience: %v", c.name, err)
		}
	}
	bad := map[string]string{
		"wrong key":        assert(other, "ec", srv.TokenURL(), clk.Now()),
		"wrong audience":   assert(ecKey, "ec", "https://elsewhere.example/token", clk.Now()),
		"expired":          assert(ecKey, "ec", srv.TokenURL(), clk.Now().Add(-10*time.Minute)),
		"other client key": assert(rsaKey, "ec", srv.TokenURL(), clk.Now()),
		"garbage":          "a.b.c",
	}
	for name, a := range bad {
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); oauthCode(err) != "invalid_client" {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A secret instead of the assertion is the wrong method.
	if _, err := tokenReq(t, srv, nil, auth{id: "ec", secret: "x"}, cc); oauthCode(err) != "invalid_client" {
		t.Errorf("secret for a private_key_jwt client: %v", err)
	}
}

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

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli")}})
	api := oauthtest.StartAPI(t, srv, "")
	tok, err := srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "read"})
	if err != nil {
		t.Fatal(err)
	}
	cli := auth{id: "cli"}
	rt0 := tok.RefreshToken
	t1 := mustToken(t, srv, nil, cli, refresh(rt0))
	if t1.RefreshToken == "" || t1.RefreshToken == rt0 {
		t.Fatal("refresh token not rotated")
	}
	t2 := mustToken(t, srv, nil, cli, refresh(t1.RefreshToken))
	if info, _ := srv.Introspect(rt0); !info.Rotated || info.Active {
		t.Errorf("old RT info %+v", info)
	}
	if r := callAPI(t, srv, api, t2.AccessToken); r.status != 200 {
		t.Fatalf("API: %d", r.status)
	}
	if st := srv.Stats(); st.RefreshTokensPresentedTwice != 0 || st.RefreshTokensPresented != 2 {
		t.Fatalf("stats before reuse %+v", st)
	}

	// Presenting rt0 again: reuse detected, the whole family is revoked.
	if _, err := tokenReq(t, srv, nil, cli, refresh(rt0)); oauthCode(err) != "invalid_grant" {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh(t2.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("newest RT survived family revocation: %v", err)
	}
	for _, at := range []string{tok.AccessToken, t1.AccessToken, t2.AccessToken} {
		if r := callAPI(t, srv, api, at); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("revoked AT answered %d %v", r.status, r.header)
		}
	}
	st := srv.Stats()
	if st.ReuseDetections != 1 || st.FamilyRevocations != 1 || st.RefreshTokensPresentedTwice != 1 {
		t.Errorf("stats %+v", st)
	}
	var outcomes []string
	for _, p := range srv.RefreshPresentations() {
		outcomes = append(outcomes, p.Outcome)
	}
	if diff := cmp.Diff([]string{"rotated", "rotated", "reuse-detected", "revoked"}, outcomes); diff != "" {
		t.Errorf("presentations (-want +got):\n%s", diff)
	}

	// Other client's RT, unknown RT.
	if _, err := tokenReq(t, srv, nil, auth{id: oauthtest.DefaultClientID}, refresh("nope")); oauthCode(err) != "invalid_client" {
		t.Errorf("unregistered default client: %v", err)
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh("nope")); oauthCode(err) != "invalid_grant" {
		t.Errorf("unknown RT: %v", err)
	}
}

func TestReuseGraceAndDetectionSwitches(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, ReuseGrace: 10 * time.Second})
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
	clk.Advance(10 * time.Second)
	t2 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken)) // lost response, retried in grace
	if t2.RefreshToken == t1.RefreshToken {
		t.Error("grace reuse returned the same RT")
	}
	mustToken(t, srv, nil, cli, refresh(t1.RefreshToken)) // the first successor still works
	clk.Advance(time.Second)
	if _, err := tokenReq(t, srv, nil, cli, refresh(tok.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("reuse after grace: %v", err)
	}
	if st := srv.Stats(); st.GraceReuses != 1 || st.ReuseDetections != 1 {
		t.Errorf("stats %+v", st)
	}

	// Reuse detection off: the reused RT fails, the family lives.
	srv2 := oauthtest.Start(t, oauthtest.Config{DisableReuseDetection: true})
	tok, _ = srv2.Mint(oauthtest.Grant{})
	t1 = mustToken(t, srv2, nil, cli, refresh(tok.RefreshToken))
	if _, err := tokenReq(t, srv2, nil, cli, refresh(tok.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("reuse: %v", err)
	}
	mustToken(t, srv2, nil, cli, refresh(t1.RefreshToken))
	if st := srv2.Stats(); st.FamilyRevocations != 0 {
		t.Errorf("family revoked although detection is off")
	}
}

func TestNonRotatingMode(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{DisableRotation: true})
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	for range 3 {
		t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
		if t1.RefreshToken != "" {
			t.Fatal("non-rotating server sent a refresh token")
		}
	}
	srv.Update(func(c *oauthtest.Config) { c.EchoRefreshToken = true })
	if t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken)); t1.RefreshToken != tok.RefreshToken {
		t.Error("EchoRefreshToken did not echo")
	}
	if st := srv.Stats(); st.ReuseDetections != 0 || st.RefreshTokensPresentedTwice != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestExpiryByServerClock(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, AccessTokenLifetime: time.Minute,
		RefreshTokenLifetime: time.Hour, SendRefreshTokenExpiresIn: true})
	api := oauthtest.StartAPI(t, srv, "")
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	if !tok.Expiry.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("Mint expiry %v", tok.Expiry)
	}
	if exp, ok := tokenx.JWTExpiry(tok.AccessToken); !ok || !exp.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("JWT exp %v %v", exp, ok)
	}
	t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
	if t1.ExpiresIn != 60 || tokenx.RefreshTokenExpiry(t1).IsZero() {
		t.Errorf("ExpiresIn %d, rt expiry %v", t1.ExpiresIn, tokenx.RefreshTokenExpiry(t1))
	}
	clk.Advance(59 * time.Second)
	if r := callAPI(t, srv, api, t1.AccessToken); r.status != 200 {
		t.Errorf("valid token refused: %d", r.status)
	}
	clk.Advance(time.Second)
	if r := callAPI(t, srv, api, t1.AccessToken); r.status != 401 {
		t.Errorf("expired token accepted: %d", r.status)
	}
	clk.Advance(time.Hour)
	if _, err := tokenReq(t, srv, nil, cli, refresh(t1.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("expired RT: %v", err)
	}
	if got := api.Requests()[1].Outcome; got != oauthtest.OutcomeExpired {
		t.Errorf("outcome %q", got)
	}
}

func TestResourceIndicators(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	orders := oauthtest.StartAPI(t, srv, "https://orders.example")
	billing := oauthtest.StartAPI(t, srv, "https://billing.example")
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{Resources: []string{orders.Resource(), billing.Resource()}})

	// One RT, rotated, mints a token for each resource.
	form := refresh(tok.RefreshToken)
	form.Set("resource", orders.Resource())
	tOrders := mustToken(t, srv, nil, cli, form)
	form = refresh(tOrders.RefreshToken)
	form.Set("resource", billing.Resource())
	tBilling := mustToken(t, srv, nil, cli, form)

	if callAPI(t, srv, orders, tOrders.AccessToken).status != 200 || callAPI(t, srv, billing, tBilling.AccessToken).status != 200 {
		t.Fatal("own tokens refused")
	}
	if callAPI(t, srv, orders, tBilling.AccessToken).status != 401 || callAPI(t, srv, billing, tOrders.AccessToken).status != 401 {
		t.Fatal("foreign tokens accepted")
	}
	if orders.Stats().Foreign != 1 || billing.Stats().Foreign != 1 {
		t.Errorf("foreign counts %+v %+v", orders.Stats(), billing.Stats())
	}
	if diff := cmp.Diff([]string{tOrders.AccessToken, tBilling.AccessToken}, orders.Tokens()); diff != "" {
		t.Errorf("orders saw (-want +got):\n%s", diff)
	}

	for name, res := range map[string][]string{
		"two resources":    {orders.Resource(), billing.Resource()},
		"not in the grant": {"https://other.example"},
		"relative":         {"/orders"},
		"fragment":         {"https://orders.example#x"},
	} {
		form := refresh(tBilling.RefreshToken)
		form["resource"] = res
		if _, err := tokenReq(t, srv, nil, cli, form); oauthCode(err) != "invalid_target" {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The RT was not consumed by the refused requests.
	mustToken(t, srv, nil, cli, refresh(tBilling.RefreshToken))

	// Without a resource: the first API is the default audience.
	cc := oauthtest.Client{ID: "job", Secret: "s3cret-job"}
	srv.Update(func(c *oauthtest.Config) { c.Clients = append(c.Clients, cc) })
	tJob := mustToken(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, url.Values{"grant_type": {"client_credentials"}})
	if info, _ := srv.Introspect(tJob.AccessToken); info.Audience != orders.Resource() {
		t.Errorf("default audience %q", info.Audience)
	}
	// Restricted resources.
	srv.Update(func(c *oauthtest.Config) { c.Resources = []string{"https://only.example"} })
	form = url.Values{"grant_type": {"client_credentials"}, "resource": {"https://elsewhere.example"}}
	if _, err := tokenReq(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, form); oauthCode(err) != "invalid_target" {
		t.Errorf("unlisted resource: %v", err)
	}
	form.Set("resource", billing.Resource()) // APIs' resources stay allowed
	mustToken(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, form)
}

func TestScopes(t *testing.T) {
	t.Parallel()
	job := oauthtest.Client{ID: "job", Secret: "x", Scopes: []string{"read", "write"}}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{job, public("cli")}})
	a := auth{id: "job", secret: "x"}
	tok := mustToken(t, srv, nil, a, url.Values{"grant_type": {"client_credentials"}})
	if tokenx.Scope(tok) != "read write" {
		t.Errorf("default scope %q", tokenx.Scope(tok))
	}
	if _, err := tokenReq(t, srv, nil, a, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}); oauthCode(err) != "invalid_scope" {
		t.Errorf("admin scope: %v", err)
	}
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "a b"})
	form := refresh(m.RefreshToken)
	form.Set("scope", "a")
	if got := mustToken(t, srv, nil, auth{id: "cli"}, form); tokenx.Scope(got) != "a" {
		t.Errorf("narrowed scope %q", tokenx.Scope(got))
	}
	m, _ = srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "a b"})
	form = refresh(m.RefreshToken)
	form.Set("scope", "a c")
	if _, err := tokenReq(t, srv, nil, auth{id: "cli"}, form); oauthCode(err) != "invalid_scope" {
		t.Errorf("widened scope: %v", err)
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli"), public("other")}})
	api := oauthtest.StartAPI(t, srv, "")
	cli := auth{id: "cli"}
	revoke := func(a auth, tok, hint string) int {
		form := url.Values{"token": {tok}}
		if hint != "" {
			form.Set("token_type_hint", hint)
		}
		r, err := postForm(t, srv, nil, oauthtest.PathRevocation, a, form)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	t1, _ := srv.Mint(oauthtest.Grant{ClientID: "cli"})
	t2 := mustToken(t, srv, nil, cli, refresh(t1.RefreshToken))

	// Another client cannot revoke it (200 all the same, RFC 7009).
	if st := revoke(auth{id: "other"}, t2.AccessToken, ""); st != 200 || callAPI(t, srv, api, t2.AccessToken).status != 200 {
		t.Fatal("other client revoked the token")
	}
	// Access token with a wrong hint: only that token is revoked.
	if revoke(cli, t2.AccessToken, "refresh_token") != 200 || callAPI(t, srv, api, t2.AccessToken).status != 401 {
		t.Fatal("access token not revoked")
	}
	t3 := mustToken(t, srv, nil, cli, refresh(t2.RefreshToken))
	if callAPI(t, srv, api, t3.AccessToken).status != 200 {
		t.Fatal("family hurt by an access token revocation")
	}
	// Refresh token: the family goes.
	if revoke(cli, t3.RefreshToken, "refresh_token") != 200 {
		t.Fatal("revocation failed")
	}
	if callAPI(t, srv, api, t3.AccessToken).status != 401 {
		t.Error("family access token survived")
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh(t3.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("revoked RT: %v", err)
	}
	if revoke(cli, "unknown-token", "") != 200 {
		t.Error("unknown token not answered 200")
	}
	r, _ := postForm(t, srv, nil, oauthtest.PathRevocation, cli, url.Values{})
	if r.status != 400 {
		t.Errorf("missing token: %d", r.status)
	}
	if st := srv.Stats(); st.Revocations != 2 || st.FamilyRevocations != 1 {
		t.Errorf("stats %+v", st)
	}
	if !srv.RevokeToken(t1.AccessToken) || srv.RevokeToken("nope") {
		t.Error("RevokeToken")
	}
}

func TestUserinfo(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Subject: "alice"})
	tok, _ := srv.Mint(oauthtest.Grant{})
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathUserinfo), nil)
	req.Header.Set("Authorization", "bearer "+tok.AccessToken)
	r, _ := do(t, srv, nil, req)
	if r.status != 200 || string(r.body) != `{"sub":"alice"}` {
		t.Errorf("userinfo %d %s", r.status, r.body)
	}
	req.Header.Set("Authorization", "Bearer nope")
	if r, _ := do(t, srv, nil, req); r.status != 401 {
		t.Errorf("bad token %d", r.status)
	}
}

// TestConcurrentRefreshRace: many goroutines present one refresh token at
// once over the network; exactly one wins, the rest trip reuse detection,
// and the counters add up (and -race sees the server's locking).
func TestConcurrentRefreshRace(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, srv, "")
	hc := srv.HTTPClient()
	tok, _ := srv.Mint(oauthtest.Grant{})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := tokenReq(t, srv, hc, auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken))
			errs <- err
			callAPI(t, srv, api, tok.AccessToken)
		})
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		if err == nil {
			wins++
		} else if oauthCode(err) != "invalid_grant" {
			t.Errorf("unexpected error %v", err)
		}
	}
	st := srv.Stats()
	if wins != 1 || st.RefreshTokensPresented != n || st.RefreshTokensPresentedTwice != 1 || st.ReuseDetections < 1 || st.FamilyRevocations != 1 {
		t.Errorf("wins %d, stats %+v", wins, st)
	}
	if api.Stats().Calls != n {
		t.Errorf("API calls %d", api.Stats().Calls)
	}
}
