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

const dpopRedirect = "http://127.0.0.1:5555/callback"

// dpopServer starts an in-memory server with DPoP in mode on a manual
// clock, with the public client "app" and the confidential client "svc".
func dpopServer(t *testing.T, mode oauthtest.DPoPMode, mods ...func(*oauthtest.Config)) (*oauthtest.Server, *clock, auth) {
	t.Helper()
	clk := newClock()
	svc := confidential("svc")
	cfg := oauthtest.Config{InMemory: true, Now: clk.Now, DPoP: mode,
		Clients: []oauthtest.Client{public("app"), svc}, DeviceNoIntervalCheck: true}
	for _, m := range mods {
		m(&cfg)
	}
	return oauthtest.Start(t, cfg), clk, auth{id: svc.ID, secret: svc.Secret}
}

// codeFor runs the browser half of a login of client "app" and returns
// the code and its verifier.
func codeFor(t *testing.T, srv *oauthtest.Server, extra url.Values) (code, verifier string) {
	t.Helper()
	verifier, challenge := pkce()
	loc, err := srv.Authorize(context.Background(), authURL(srv, "app", dpopRedirect, "st", challenge, extra))
	if err != nil {
		t.Fatal(err)
	}
	if e := loc.Query().Get("error"); e != "" {
		t.Fatalf("authorize: %s %s", e, loc.Query().Get("error_description"))
	}
	return loc.Query().Get("code"), verifier
}

func codeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {oauthtest.GrantAuthorizationCode}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {dpopRedirect}}
}

// TestDPoPOffChangesNothing: with DPoP off (the default) a proof, even a
// broken one, is ignored, tokens are Bearer, and discovery is silent.
func TestDPoPOffChangesNothing(t *testing.T) {
	t.Parallel()
	srv, _, svc := dpopServer(t, oauthtest.DPoPOff)
	r := dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}}, "not.a.proof")
	if tb := parseToken(t, r); r.status != 200 || tb.TokenType != "Bearer" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	d, _ := do(t, srv, nil, mustReq(t, srv.URL(oauthtest.PathOAuthDiscovery)))
	if strings.Contains(string(d.body), "dpop") {
		t.Errorf("discovery mentions DPoP: %s", d.body)
	}
}

// TestDPoPEveryGrantEveryAlg: each grant with a proof of each algorithm
// gets a DPoP token bound to the proof's key: token_type DPoP, cnf.jkt in
// the JWT, and the thumbprint in Introspect.
func TestDPoPEveryGrantEveryAlg(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional)
	d, _ := do(t, srv, nil, mustReq(t, srv.URL(oauthtest.PathOAuthDiscovery)))
	var doc struct {
		Algs []string `json:"dpop_signing_alg_values_supported"`
	}
	json.Unmarshal(d.body, &doc)
	if !slices.Equal(doc.Algs, oauthtest.DefaultDPoPSigningAlgs) {
		t.Errorf("discovery algs %v", doc.Algs)
	}
	app := auth{id: "app"}
	for _, alg := range []string{"ES256", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			k := newDPoPKey(t, alg)
			p := func() string { return k.proof(t, http.MethodPost, srv.TokenURL(), clk.Now()) }
			check := func(grant string, tb tokenBody) {
				t.Helper()
				cnf, _ := jwtClaims(t, tb.AccessToken)["cnf"].(map[string]any)
				if cnf["jkt"] != k.jkt() {
					t.Errorf("%s: cnf %v, want jkt %s", grant, cnf, k.jkt())
				}
				if info, _ := srv.Introspect(tb.AccessToken); info.DPoPJKT != k.jkt() {
					t.Errorf("%s: Introspect jkt %q", grant, info.DPoPJKT)
				}
			}
			cc := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}}, p()))
			check("client_credentials", cc)

			code, verifier := codeFor(t, srv, nil)
			ac := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), p()))
			check("authorization_code", ac)
			if info, _ := srv.Introspect(ac.RefreshToken); info.DPoPJKT != k.jkt() {
				t.Errorf("public client's refresh token not bound: %q", info.DPoPJKT)
			}

			rt := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, refresh(ac.RefreshToken), p()))
			check("refresh_token", rt)

			dev := startDevice(t, srv, "app")
			dt := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app,
				url.Values{"grant_type": {oauthtest.GrantDeviceCode}, "device_code": {dev.DeviceCode}}, p()))
			check("device_code", dt)
		})
	}
	if st := srv.Stats(); st.DPoPProofs[oauthtest.EndpointToken] != 16 || len(st.DPoPRefusals) != 0 {
		t.Errorf("proofs %v refusals %v", st.DPoPProofs, st.DPoPRefusals)
	}
}

// TestDPoPProofRefusals: every check of RFC 9449 section 4.3 refuses a
// proof that fails it with 400 invalid_dpop_proof, counted by reason.
func TestDPoPProofRefusals(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional)
	es := newDPoPKey(t, "ES256")
	es384 := newDPoPKey(t, "ES384")
	now := clk.Now()
	tokenURL := srv.TokenURL()
	set := func(where string, k string, v any) proofMod {
		return func(h, c map[string]any) {
			m := c
			if where == "hdr" {
				m = h
			}
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
	}
	jwkSet := func(k string, v any) proofMod {
		return func(h, _ map[string]any) { h["jwk"].(map[string]any)[k] = v }
	}
	cases := []struct {
		name, reason string
		proofs       []string
	}{
		{"wrong typ", oauthtest.DPoPRefusedTyp, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "typ", "JWT"))}},
		{"no typ", oauthtest.DPoPRefusedTyp, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "typ", nil))}},
		{"alg none", oauthtest.DPoPRefusedAlg, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "alg", "none"))}},
		{"alg HS256", oauthtest.DPoPRefusedAlg, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "alg", "HS256"))}},
		{"alg not accepted", oauthtest.DPoPRefusedAlg, []string{es384.proof(t, "POST", tokenURL, now)}},
		{"no jwk", oauthtest.DPoPRefusedJWK, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "jwk", nil))}},
		{"jwk of another kind", oauthtest.DPoPRefusedJWK, []string{es.proof(t, "POST", tokenURL, now, jwkSet("kty", "RSA"))}},
		{"jwk off the curve", oauthtest.DPoPRefusedJWK, []string{es.proof(t, "POST", tokenURL, now, jwkSet("y", es.jwk["x"]))}},
		{"jwk with d", oauthtest.DPoPRefusedPrivateKey, []string{es.proof(t, "POST", tokenURL, now, jwkSet("d", "AAAA"))}},
		{"jwk with k", oauthtest.DPoPRefusedPrivateKey, []string{es.proof(t, "POST", tokenURL, now, jwkSet("k", "AAAA"))}},
		{"signature of another key", oauthtest.DPoPRefusedSignature, []string{es.proof(t, "POST", tokenURL, now, func(h, _ map[string]any) {
			h["jwk"] = newDPoPKey(t, "ES256").jwk
		})}},
		{"crit", oauthtest.DPoPRefusedMalformed, []string{es.proof(t, "POST", tokenURL, now, set("hdr", "crit", []string{"exp"}))}},
		{"not a JWS", oauthtest.DPoPRefusedMalformed, []string{"a.b"}},
		{"two headers", oauthtest.DPoPRefusedMultiple, []string{es.proof(t, "POST", tokenURL, now), es.proof(t, "POST", tokenURL, now)}},
		{"no jti", oauthtest.DPoPRefusedClaims, []string{es.proof(t, "POST", tokenURL, now, set("claims", "jti", nil))}},
		{"iat a string", oauthtest.DPoPRefusedClaims, []string{es.proof(t, "POST", tokenURL, now, set("claims", "iat", "now"))}},
		{"wrong htm", oauthtest.DPoPRefusedHTM, []string{es.proof(t, "GET", tokenURL, now)}},
		{"htm lower case", oauthtest.DPoPRefusedHTM, []string{es.proof(t, "post", tokenURL, now)}},
		{"htu of another endpoint", oauthtest.DPoPRefusedHTU, []string{es.proof(t, "POST", srv.RevocationURL(), now)}},
		{"htu of another port", oauthtest.DPoPRefusedHTU, []string{es.proof(t, "POST", strings.Replace(tokenURL, "127.0.0.1:", "127.0.0.1:1", 1), now)}},
		{"htu https", oauthtest.DPoPRefusedHTU, []string{es.proof(t, "POST", strings.Replace(tokenURL, "http:", "https:", 1), now)}},
		{"htu relative", oauthtest.DPoPRefusedHTU, []string{es.proof(t, "POST", oauthtest.PathToken, now)}},
		{"iat too old", oauthtest.DPoPRefusedIAT, []string{es.proof(t, "POST", tokenURL, now.Add(-61*time.Second))}},
		{"iat in the future", oauthtest.DPoPRefusedIAT, []string{es.proof(t, "POST", tokenURL, now.Add(6*time.Second))}},
		{"iat huge", oauthtest.DPoPRefusedIAT, []string{es.proof(t, "POST", tokenURL, now, set("claims", "iat", 1e300))}},
	}
	for _, tc := range cases {
		r := dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}}, tc.proofs...)
		if tb := wantTokenError(t, r, "invalid_dpop_proof"); tb.Description == "" {
			t.Errorf("%s: no description", tc.name)
		}
		if n := srv.Stats().DPoPRefusals[oauthtest.EndpointToken+":"+tc.reason]; n == 0 {
			t.Errorf("%s: not counted under %q: %v", tc.name, tc.reason, srv.Stats().DPoPRefusals)
		}
	}
	// Inside the window, at both ends, is fine.
	for _, iat := range []time.Time{now.Add(-59 * time.Second), now.Add(4 * time.Second)} {
		mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}},
			es.proof(t, "POST", tokenURL, iat)))
	}
	if st := srv.Stats(); st.AccessTokensIssued != 2 {
		t.Errorf("refused proofs issued tokens: %d", st.AccessTokensIssued)
	}
}

// TestDPoPHTUNormalised: htu is compared without query and fragment and
// after RFC 3986 normalisation, as RFC 9449 section 4.3 says.
func TestDPoPHTUNormalised(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional)
	k := newDPoPKey(t, "ES256")
	host := strings.TrimPrefix(srv.Issuer(), "http://")
	for _, htu := range []string{
		srv.TokenURL() + "?foo=bar#frag",
		"HTTP://" + host + "/token",
		"http://" + host + "/a/../token",
		"http://" + host + "/./token",
		"http://" + host + "/%74oken",
	} {
		r := dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}}, k.proof(t, "POST", htu, clk.Now()))
		if r.status != 200 {
			t.Errorf("htu %q refused: %s", htu, r.body)
		}
	}
	// The request's own query is ignored as well.
	req := mustReq(t, srv.TokenURL()+"?x=1")
	req.Method = http.MethodPost
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Body = http.NoBody
	req.Header.Set("DPoP", k.proof(t, "POST", srv.TokenURL(), clk.Now()))
	if r, _ := do(t, srv, nil, req); r == nil || strings.Contains(string(r.body), "invalid_dpop_proof") {
		t.Errorf("request query spoiled the htu match")
	}
}

// TestDPoPReplay: a proof is accepted once; the same jti from the same key
// is refused while the proof could still be accepted.
func TestDPoPReplay(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional)
	k := newDPoPKey(t, "EdDSA")
	form := url.Values{"grant_type": {oauthtest.GrantClientCredentials}}
	p := k.proof(t, "POST", srv.TokenURL(), clk.Now())
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, svc, form, p))
	if got := srv.LastDPoPProof(oauthtest.EndpointToken); got != p {
		t.Fatal("LastDPoPProof is not the proof accepted")
	}
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, svc, form, srv.LastDPoPProof(oauthtest.EndpointToken)), "invalid_dpop_proof")
	// A new proof reusing the jti, even signed afresh, is a replay too.
	jti := func(h, c map[string]any) { c["jti"] = "fixed-jti" }
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, svc, form, k.proof(t, "POST", srv.TokenURL(), clk.Now(), jti)))
	clk.Advance(30 * time.Second)
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, svc, form, k.proof(t, "POST", srv.TokenURL(), clk.Now(), jti)), "invalid_dpop_proof")
	if n := srv.Stats().DPoPRefusals["token:"+oauthtest.DPoPRefusedReplay]; n != 2 {
		t.Errorf("replays counted %d, want 2", n)
	}
}

// TestDPoPRequired: without a proof the token endpoint refuses every
// grant; PAR still takes dpop_jkt instead.
func TestDPoPRequired(t *testing.T) {
	t.Parallel()
	srv, _, svc := dpopServer(t, oauthtest.DPoPRequired)
	r := dpopPost(t, srv, oauthtest.PathToken, svc, url.Values{"grant_type": {oauthtest.GrantClientCredentials}})
	wantTokenError(t, r, "invalid_dpop_proof")
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app"})
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, auth{id: "app"}, refresh(m.RefreshToken)), "invalid_dpop_proof")
	if p := srv.RefreshPresentations(); len(p) != 1 || p[0].Outcome != oauthtest.RefreshDPoPInvalid {
		t.Errorf("presentations %v", p)
	}
	if n := srv.Stats().DPoPRefusals["token:"+oauthtest.DPoPRefusedMissing]; n != 2 {
		t.Errorf("missing counted %d", n)
	}
}

// TestDPoPBoundRefreshToken: a public client's refresh token is bound to
// its key (RFC 9449 section 5): another key, or none, is refused
// invalid_grant without revoking anything; a confidential client's is not
// bound.
func TestDPoPBoundRefreshToken(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional)
	k, other := newDPoPKey(t, "ES256"), newDPoPKey(t, "EdDSA")
	app := auth{id: "app"}
	code, verifier := codeFor(t, srv, nil)
	tb := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), k.proof(t, "POST", srv.TokenURL(), clk.Now())))

	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, app, refresh(tb.RefreshToken), other.proof(t, "POST", srv.TokenURL(), clk.Now())), "invalid_grant")
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, app, refresh(tb.RefreshToken)), "invalid_grant")
	if info, _ := srv.Introspect(tb.RefreshToken); !info.Active {
		t.Fatal("a refused thief revoked or rotated the refresh token")
	}
	next := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, refresh(tb.RefreshToken), k.proof(t, "POST", srv.TokenURL(), clk.Now())))
	if info, _ := srv.Introspect(next.RefreshToken); info.DPoPJKT != k.jkt() {
		t.Errorf("rotated refresh token unbound: %q", info.DPoPJKT)
	}
	var outcomes []string
	for _, p := range srv.RefreshPresentations() {
		outcomes = append(outcomes, p.Outcome)
	}
	want := []string{oauthtest.RefreshDPoPKeyMismatch, oauthtest.RefreshDPoPKeyMismatch, oauthtest.RefreshRotated}
	if !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}

	// A confidential client's refresh token is bound by its credentials.
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "svc", DPoPJKT: k.jkt()})
	if m.TokenType != "DPoP" {
		t.Errorf("Mint token type %q", m.TokenType)
	}
	if info, _ := srv.Introspect(m.RefreshToken); info.DPoPJKT != "" {
		t.Errorf("confidential refresh token bound to %q", info.DPoPJKT)
	}
	cc := mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, svc, refresh(m.RefreshToken), other.proof(t, "POST", srv.TokenURL(), clk.Now())))
	if info, _ := srv.Introspect(cc.AccessToken); info.DPoPJKT != other.jkt() {
		t.Errorf("access token bound to %q, want the new key", info.DPoPJKT)
	}
}

// TestDPoPCodeBinding: dpop_jkt in the authorization request (RFC 9449
// section 10), or a proof at the PAR endpoint (section 10.1), binds the
// code to a key that alone can redeem it.
func TestDPoPCodeBinding(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPOptional)
	k, thief := newDPoPKey(t, "ES256"), newDPoPKey(t, "ES256")
	app := auth{id: "app"}
	code, verifier := codeFor(t, srv, url.Values{"dpop_jkt": {k.jkt()}})
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), thief.proof(t, "POST", srv.TokenURL(), clk.Now())), "invalid_grant")
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier)), "invalid_grant")
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), k.proof(t, "POST", srv.TokenURL(), clk.Now())))
	if n := srv.Stats().DPoPRefusals["token:"+oauthtest.DPoPRefusedKey]; n != 2 {
		t.Errorf("key refusals %d", n)
	}

	// A malformed dpop_jkt is refused at the authorization endpoint.
	_, challenge := pkce()
	loc, err := srv.Authorize(context.Background(), authURL(srv, "app", dpopRedirect, "st", challenge, url.Values{"dpop_jkt": {"short"}}))
	if err != nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("malformed dpop_jkt: %v %v", loc, err)
	}

	// PAR with a proof binds the code to the proof's key.
	verifier, challenge = pkce()
	form := parForm(dpopRedirect, challenge)
	r := dpopPost(t, srv, oauthtest.PathPAR, app, form, k.proof(t, "POST", srv.PARURL(), clk.Now()))
	var pr struct {
		RequestURI string `json:"request_uri"`
	}
	if json.Unmarshal(r.body, &pr); r.status != 201 {
		t.Fatalf("PAR: %d %s", r.status, r.body)
	}
	loc, err = srv.Authorize(context.Background(), srv.AuthorizeURL()+"?client_id=app&request_uri="+url.QueryEscape(pr.RequestURI))
	if err != nil {
		t.Fatal(err)
	}
	code = loc.Query().Get("code")
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), thief.proof(t, "POST", srv.TokenURL(), clk.Now())), "invalid_grant")
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, codeForm(code, verifier), k.proof(t, "POST", srv.TokenURL(), clk.Now())))

	// Both ways at once must name the same key.
	form.Set("dpop_jkt", thief.jkt())
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathPAR, app, form, k.proof(t, "POST", srv.PARURL(), clk.Now())), "invalid_dpop_proof")
	// A PAR proof is checked like any other.
	form.Del("dpop_jkt")
	wantTokenError(t, dpopPost(t, srv, oauthtest.PathPAR, app, form, k.proof(t, "POST", srv.TokenURL(), clk.Now())), "invalid_dpop_proof")
	if st := srv.Stats(); st.DPoPProofs[oauthtest.EndpointPAR] != 2 || st.DPoPRefusals["par:"+oauthtest.DPoPRefusedHTU] != 1 {
		t.Errorf("PAR counters %v %v", st.DPoPProofs, st.DPoPRefusals)
	}
}

// TestDPoPConfigValidation: only asymmetric algorithms the server can
// verify may be configured.
func TestDPoPConfigValidation(t *testing.T) {
	t.Parallel()
	for _, algs := range [][]string{{"none"}, {"HS256"}, {"ES256", "ES256K"}} {
		if s, err := oauthtest.New(oauthtest.Config{InMemory: true, DPoP: oauthtest.DPoPOptional, DPoPSigningAlgs: algs}); err == nil {
			s.Close()
			t.Errorf("algs %v accepted", algs)
		}
	}
	srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, DPoP: oauthtest.DPoPRequired})
	c := srv.Config()
	if c.DPoPProofWindow != time.Minute || c.DPoPProofSkew != 5*time.Second || len(c.DPoPSigningAlgs) != 4 || c.DPoP.String() != "required" {
		t.Errorf("defaults %v %v %v %v", c.DPoPProofWindow, c.DPoPProofSkew, c.DPoPSigningAlgs, c.DPoP)
	}
	if _, err := srv.Mint(oauthtest.Grant{DPoPJKT: "nope"}); err == nil {
		t.Error("Mint accepted a malformed DPoPJKT")
	}
}
