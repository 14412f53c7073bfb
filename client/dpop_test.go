package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// withDPoP turns DPoP on.
func withDPoP(o *Options) { o.DPoP = true }

// forgetDPoPKeys empties the process's cache of parsed keys, as a new
// process starts: what a Client then uses must come from the store.
func forgetDPoPKeys(t *testing.T) {
	t.Helper()
	dpopKeys.mu.Lock()
	defer dpopKeys.mu.Unlock()
	clear(dpopKeys.byDER)
	clear(dpopKeys.byJKT)
	clear(dpopKeys.own)
}

// storedKey returns the DPoP key kept in c's login entry.
func storedKey(t *testing.T, f *fixture, c *Client) []byte {
	t.Helper()
	e, err := f.store.Load(t.Context(), c.baseKey().String())
	if err != nil {
		t.Fatalf("loading the login entry: %v", err)
	}
	if len(e.KeyPair) == 0 {
		t.Fatal("the login entry holds no DPoP key")
	}
	return e.KeyPair
}

// thumbprintOf parses a stored key and returns its thumbprint.
func thumbprintOf(t *testing.T, der []byte) string {
	t.Helper()
	k, err := dpop.ParseKey(der, "")
	if err != nil {
		t.Fatal(err)
	}
	return k.Thumbprint()
}

// lastAPIRequest returns the API's last recorded request.
func lastAPIRequest(t *testing.T, api *oauthtest.API) oauthtest.APIRequest {
	t.Helper()
	reqs := api.Requests()
	if len(reqs) == 0 {
		t.Fatal("the API saw no request")
	}
	return reqs[len(reqs)-1]
}

// TestDPoPLoginKeyPersistedAndReused logs in with DPoP against a server
// that requires it: the API gets "Authorization: DPoP" with a proof of the
// key kept in the login's store entry; a restarted process (no key in
// memory) uses the stored key for the stored token and for the bound
// refresh of a public client, and the key never changes.
func TestDPoPLoginKeyPersistedAndReused(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	jkt := thumbprintOf(t, storedKey(t, f, c))
	if r := lastAPIRequest(t, f.api); r.Scheme != oauthtest.SchemeDPoP || r.DPoPJKT != jkt {
		t.Fatalf("API request: scheme %q key %q, want DPoP with the stored key %q", r.Scheme, r.DPoPJKT, jkt)
	}
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" || tokenx.DPoPKey(tok) != nil {
		t.Fatalf("public token: type %q, carries the private key: %v", tok.TokenType, tokenx.DPoPKey(tok) != nil)
	}
	c.Close()

	// A new process: the key comes from the store.
	forgetDPoPKeys(t)
	c2 := f.client(t, withDPoP)
	hc2, _ := c2.HTTPClient(t.Context())
	if code, body := get(t, hc2, f.api.URL()); code != 200 {
		t.Fatalf("after restart the API answered %d: %s", code, body)
	}
	if r := lastAPIRequest(t, f.api); r.DPoPJKT != jkt {
		t.Fatalf("after restart the proof's key is %q, want the stored %q", r.DPoPJKT, jkt)
	}
	forceRefresh(t, c2)
	if code, body := get(t, hc2, f.api.URL()); code != 200 {
		t.Fatalf("after the refresh the API answered %d: %s", code, body)
	}
	if got := thumbprintOf(t, storedKey(t, f, c2)); got != jkt {
		t.Fatalf("the refresh changed the stored key: %q, want %q", got, jkt)
	}
	if r := lastAPIRequest(t, f.api); r.DPoPJKT != jkt {
		t.Fatalf("after the refresh the proof's key is %q, want %q", r.DPoPJKT, jkt)
	}
	st := f.as.Stats()
	if st.Grants["refresh_token"] != 1 || st.DPoPProofs[oauthtest.EndpointToken] != 2 || len(st.DPoPRefusals) != 0 {
		t.Fatalf("stats: refreshes %d, token proofs %d, refusals %v; want 1, 2, none", st.Grants["refresh_token"], st.DPoPProofs[oauthtest.EndpointToken], st.DPoPRefusals)
	}
	c2.Close()

	// Another process adopts the refreshed token with the same key.
	forgetDPoPKeys(t)
	c3 := f.client(t, withDPoP)
	hc3, _ := c3.HTTPClient(t.Context())
	if code, _ := get(t, hc3, f.api.URL()); code != 200 || lastAPIRequest(t, f.api).DPoPJKT != jkt {
		t.Fatalf("a third process: API answered %d with key %q", code, lastAPIRequest(t, f.api).DPoPJKT)
	}
	if n := f.as.Stats().Grants["refresh_token"]; n != 1 {
		t.Fatalf("the third process refreshed again (%d refreshes) instead of using the stored token", n)
	}
}

// TestDPoPLogoutDeletesKey: the key goes with the login's entry.
func TestDPoPLogoutDeletesKey(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	storedKey(t, f, c)
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := f.store.Load(t.Context(), c.baseKey().String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Logout the login entry (and its key) is still there: %v", err)
	}
}

// TestDPoPLogoutForgetsParsedKey: after Logout the process keeps no
// parsed copy of the deleted key, and the next login (with a new key)
// sends proofs of the new key, not the remembered old one. The
// application's own key is used again after a logout.
func TestDPoPLogoutForgetsParsedKey(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	old := thumbprintOf(t, storedKey(t, f, c))
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if hk := keyByThumbprint(old); hk != nil {
		t.Fatal("after Logout the process still holds the parsed key")
	}
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("second Login: %v", err)
	}
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("after the second login the API answered %d: %s", code, body)
	}
	fresh := thumbprintOf(t, storedKey(t, f, c))
	if fresh == old || lastAPIRequest(t, f.api).DPoPJKT != fresh {
		t.Fatalf("second login: stored key %q, API saw %q, old key %q", fresh, lastAPIRequest(t, f.api).DPoPJKT, old)
	}

	own, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ownKey, _ := dpop.NewKey(own, "")
	c2 := f.loggedIn(t, func(o *Options) { o.DPoPKey, o.Profile = own, "own" })
	hc2, _ := c2.HTTPClient(t.Context())
	for round := range 2 {
		if code, body := get(t, hc2, f.api.URL()); code != 200 || lastAPIRequest(t, f.api).DPoPJKT != ownKey.Thumbprint() {
			t.Fatalf("own key, round %d: API answered %d (%s) with key %q", round, code, body, lastAPIRequest(t, f.api).DPoPJKT)
		}
		if _, err := c2.Logout(t.Context()); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		if err := c2.Login(t.Context()); err != nil {
			t.Fatalf("Login again with the own key: %v", err)
		}
	}
}

// TestDPoPLogoutKeepsSharedOwnKey: two profiles logged in with the
// application's key; logging one out leaves the other working, whether or
// not it had sent a request before.
func TestDPoPLogoutKeepsSharedOwnKey(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	own, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a := f.loggedIn(t, func(o *Options) { o.DPoPKey, o.Profile = own, "a" })
	b := f.loggedIn(t, func(o *Options) { o.DPoPKey, o.Profile = own, "b" })
	ha, _ := a.HTTPClient(t.Context())
	if code, body := get(t, ha, f.api.URL()); code != 200 {
		t.Fatalf("profile a: API answered %d: %s", code, body)
	}
	if _, err := a.Logout(t.Context()); err != nil {
		t.Fatalf("Logout of profile a: %v", err)
	}
	hb, _ := b.HTTPClient(t.Context())
	if code, body := get(t, hb, f.api.URL()); code != 200 {
		t.Fatalf("profile b after a's logout: API answered %d: %s", code, body)
	}
}

// TestDPoPLogoutForgetsKeyUnderAnyAlg: with DPoPAlg "ES256" spelled out,
// Logout still drops every parsed copy of the generated key.
func TestDPoPLogoutForgetsKeyUnderAnyAlg(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP, func(o *Options) { o.DPoPAlg = dpop.ES256 })
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	forceRefresh(t, c) // parses the stored key under "ES256"
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	jkt := thumbprintOf(t, storedKey(t, f, c))
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	dpopKeys.mu.RLock()
	defer dpopKeys.mu.RUnlock()
	for _, hk := range dpopKeys.byDER {
		if hk.k.Thumbprint() == jkt {
			t.Fatal("after Logout the process still holds the parsed key under its bytes")
		}
	}
}

// TestDPoPLostKeyNeverRefreshesWithAnother: a stored DPoP login whose key
// is gone from the store (and from the process) is not refreshed with a
// new key, which a server may take for a stolen refresh token: the
// refresh fails with ErrReauthRequired and nothing is sent.
func TestDPoPLostKeyNeverRefreshesWithAnother(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	key := c.baseKey().String()
	c.Close()
	e, err := f.store.Load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	e.KeyPair = nil
	if err := f.store.Save(t.Context(), key, e); err != nil {
		t.Fatal(err)
	}
	forgetDPoPKeys(t)
	before := f.as.Stats().Requests[oauthtest.EndpointToken]

	c2 := f.client(t, withDPoP)
	forceRefresh(t, c2)
	if _, err := c2.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("refresh without the stored key: %v, want ErrReauthRequired", err)
	}
	if n := f.as.Stats().Requests[oauthtest.EndpointToken] - before; n != 0 {
		t.Fatalf("%d token requests were sent with another key", n)
	}
	if err := c2.Login(t.Context()); err != nil {
		t.Fatalf("a new login after the lost key: %v", err)
	}
	storedKey(t, f, c2)
}

// TestDPoPClientCredentials: a server job's first token makes the key,
// kept in the store; a later process reuses it.
func TestDPoPClientCredentials(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	cfg := f.confidential(t, "job", "job-secret-1234", "client_secret_basic")
	cfg.DPoP = true
	c := mustNew(t, cfg)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	jkt := thumbprintOf(t, storedKey(t, f, c))
	if r := lastAPIRequest(t, f.api); r.Scheme != oauthtest.SchemeDPoP || r.DPoPJKT != jkt {
		t.Fatalf("API request: scheme %q key %q, want DPoP with %q", r.Scheme, r.DPoPJKT, jkt)
	}
	forceRefresh(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := thumbprintOf(t, storedKey(t, f, c)); got != jkt {
		t.Fatalf("the second token has another key: %q, want %q", got, jkt)
	}
}

// TestDPoPDowngrade: a server without DPoP answers Bearer; refused unless
// the application allows it.
func TestDPoPDowngrade(t *testing.T) {
	f := newFixture(t, oauthtest.Config{})
	c := f.client(t, withDPoP)
	err := c.Login(t.Context())
	if !errors.Is(err, ErrUnsupportedTokenType) || !strings.Contains(err.Error(), `token_type "Bearer"; accepted: DPoP`) {
		t.Fatalf("Login with a Bearer answer: %v, want ErrUnsupportedTokenType naming the type and the accepted one", err)
	}
	c.Close()
	c2 := f.loggedIn(t, withDPoP, func(o *Options) { o.DPoPAllowDowngrade = true })
	hc, _ := c2.HTTPClient(t.Context())
	if code, _ := get(t, hc, f.api.URL()); code != 200 || lastAPIRequest(t, f.api).Scheme != oauthtest.SchemeBearer {
		t.Fatalf("downgraded login: API answered %d, scheme %q", code, lastAPIRequest(t, f.api).Scheme)
	}
}

// TestDPoPAlgorithmNotAccepted: a key whose algorithm discovery does not
// list fails New with a typed error, before any token request.
func TestDPoPAlgorithmNotAccepted(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPSigningAlgs: []string{"ES384"}})
	cfg := f.config()
	cfg.DPoP = true
	_, err := New(t.Context(), with(cfg))
	if !errors.Is(err, ErrDPoPAlgorithm) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New: %v, want ErrDPoPAlgorithm and ErrInvalidConfig", err)
	}
	if n := f.as.Stats().Requests[oauthtest.EndpointToken]; n != 0 {
		t.Fatalf("%d token requests were made", n)
	}
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cfg.DPoPKey = k384
	if _, err := New(t.Context(), with(cfg)); err != nil {
		t.Fatalf("New with an ES384 key: %v", err)
	}
}

// TestDPoPInvalidConfig: unusable keys and algorithms fail New.
func TestDPoPInvalidConfig(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, mod := range map[string]func(*Options){
		"RS256 for an EC key":  func(o *Options) { o.DPoPKey, o.DPoPAlg = p256, "RS256" },
		"small RSA key":        func(o *Options) { o.DPoPKey = small },
		"alg without key":      func(o *Options) { o.DPoP, o.DPoPAlg = true, "PS256" },
		"downgrade without it": func(o *Options) { o.DPoPAllowDowngrade = true },
		"with a fixed token":   func(o *Options) { o.DPoP, o.AccessToken = true, "abc" },
	} {
		cfg := f.config()
		mod(&cfg)
		if _, err := New(t.Context(), with(cfg)); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestDPoPOwnRSAKey: an application's RSA key signs PS256 proofs, and the
// key is kept with the credential.
func TestDPoPOwnRSAKey(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPSigningAlgs: []string{"PS256", "ES256"}})
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := f.loggedIn(t, func(o *Options) { o.DPoPKey = k })
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	own, _ := dpop.NewKey(k, "")
	if got := thumbprintOf(t, storedKey(t, f, c)); got != own.Thumbprint() || lastAPIRequest(t, f.api).DPoPJKT != got {
		t.Fatalf("stored key %q, API key %q, want the application's %q", got, lastAPIRequest(t, f.api).DPoPJKT, own.Thumbprint())
	}
}

// TestDPoPSecretsNeverPrinted: neither the private key (its PKCS #8 bytes,
// in any common encoding) nor a proof reaches the logs, the errors or a
// printed token.
func TestDPoPSecretsNeverPrinted(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAS: true, DPoPNonceAPI: true},
		wrapTransport(func(rt http.RoundTripper) http.RoundTripper { return tamperProof{rt, "/x"} }))
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	get(t, hc, f.api.URL())
	forceRefresh(t, c)
	get(t, hc, f.api.URL())
	// A proof the API refuses, and one the token endpoint refuses: their
	// errors and logs must not carry them either.
	_, apiErr := hc.Get(f.api.URL() + "/x")
	if !errors.Is(apiErr, ErrInvalidDPoPProof) {
		t.Fatalf("tampered API proof: %v, want ErrInvalidDPoPProof", apiErr)
	}
	refusedAPIProof := f.as.LastDPoPProof(oauthtest.EndpointAPI)
	g := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired},
		wrapTransport(func(rt http.RoundTripper) http.RoundTripper { return tamperProof{rt, "/token"} }))
	job := g.confidential(t, "job", "job-secret-1234", "client_secret_basic")
	job.DPoP = true
	_, tokenErr := mustNew(t, job).Token(t.Context())
	if !errors.Is(tokenErr, ErrInvalidDPoPProof) {
		t.Fatalf("tampered token proof: %v, want ErrInvalidDPoPProof", tokenErr)
	}
	// Every proof is a JWT: none may appear in a log or an error.
	if leaks := leakscan.Find(f.log.String() + g.log.String() + apiErr.Error() + tokenErr.Error()); len(leaks) > 0 {
		t.Fatalf("token-shaped strings in logs or errors: %q", leaks)
	}
	tok, _ := c.Token(t.Context())
	der := storedKey(t, f, c)
	sum := sha256.Sum256(der)
	secrets := []string{
		base64.StdEncoding.EncodeToString(der), base64.RawStdEncoding.EncodeToString(der),
		base64.RawURLEncoding.EncodeToString(der), fmt.Sprintf("%x", der), string(der), fmt.Sprintf("%x", sum[:]),
		f.as.LastDPoPProof(oauthtest.EndpointToken), f.as.LastDPoPProof(oauthtest.EndpointAPI), refusedAPIProof,
	}
	// An error that carries server text, and every printed form of the
	// token and the Client.
	_, cfgErr := New(t.Context(), func(o *Options) { *o = f.config(); o.DPoP, o.DPoPAlg = true, "RS256" })
	printed := f.log.String() + g.log.String() + fmt.Sprintf("%v %+v %#v %v %+v %v %v", tok, tok, tok, cfgErr, c, apiErr, tokenErr)
	if leaks := canary.Find(printed, secrets...); len(leaks) > 0 {
		t.Fatalf("DPoP secrets printed: %q", leaks)
	}
	if len(f.log.String()) == 0 {
		t.Fatal("nothing was logged: the scan proves nothing")
	}
}
