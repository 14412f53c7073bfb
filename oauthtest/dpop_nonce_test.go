package oauthtest_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// TestDPoPNonceTokenEndpoint: with DPoPNonceAS, a proof without the
// current nonce is answered 400 use_dpop_nonce with a DPoP-Nonce header;
// the retry with it succeeds and carries the nonce too; a rotated nonce
// is asked for again (RFC 9449 section 8).
func TestDPoPNonceTokenEndpoint(t *testing.T) {
	t.Parallel()
	srv, clk, svc := dpopServer(t, oauthtest.DPoPOptional, func(c *oauthtest.Config) { c.DPoPNonceAS = true })
	k := newDPoPKey(t, "ES256")
	form := url.Values{"grant_type": {oauthtest.GrantClientCredentials}}
	post := func(mods ...proofMod) *rawResp {
		return dpopPost(t, srv, oauthtest.PathToken, svc, form, k.proof(t, "POST", srv.TokenURL(), clk.Now(), mods...))
	}

	r := post()
	wantTokenError(t, r, "use_dpop_nonce")
	nonce := r.header.Get("DPoP-Nonce")
	if as, _ := srv.DPoPNonces(); nonce == "" || nonce != as {
		t.Fatalf("DPoP-Nonce %q, server's %q", nonce, as)
	}
	wantTokenError(t, post(withNonce("stale")), "use_dpop_nonce")
	r = post(withNonce(nonce))
	mustDPoPToken(t, r)
	if r.header.Get("DPoP-Nonce") != nonce {
		t.Errorf("success without the nonce: %q", r.header.Get("DPoP-Nonce"))
	}

	srv.RotateDPoPNonce()
	r = post(withNonce(nonce))
	wantTokenError(t, r, "use_dpop_nonce")
	fresh := r.header.Get("DPoP-Nonce")
	if fresh == nonce || fresh == "" {
		t.Fatalf("nonce not rotated: %q", fresh)
	}
	mustDPoPToken(t, post(withNonce(fresh)))

	// A proof wrong in another way is refused as such, nonce or not.
	r = dpopPost(t, srv, oauthtest.PathToken, svc, form, k.proof(t, "GET", srv.TokenURL(), clk.Now()))
	wantTokenError(t, r, "invalid_dpop_proof")
	if st := srv.Stats(); st.DPoPNonceChallenges[oauthtest.EndpointToken] != 3 || st.DPoPProofs[oauthtest.EndpointToken] != 2 ||
		len(st.DPoPRefusals) != 1 {
		t.Errorf("counters %v %v %v", st.DPoPNonceChallenges, st.DPoPProofs, st.DPoPRefusals)
	}
	// The nonce of the APIs is another one, refused here.
	_, apiNonce := srv.DPoPNonces()
	wantTokenError(t, post(withNonce(apiNonce)), "use_dpop_nonce")
}

// TestDPoPNonceRefresh: a refresh answered use_dpop_nonce is sent again
// with the same refresh token, which is no replay.
func TestDPoPNonceRefresh(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPRequired, func(c *oauthtest.Config) { c.DPoPNonceAS = true })
	k := newDPoPKey(t, "EdDSA")
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app", DPoPJKT: k.jkt()})
	app := auth{id: "app"}
	r := dpopPost(t, srv, oauthtest.PathToken, app, refresh(m.RefreshToken), k.proof(t, "POST", srv.TokenURL(), clk.Now()))
	wantTokenError(t, r, "use_dpop_nonce")
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, app, refresh(m.RefreshToken),
		k.proof(t, "POST", srv.TokenURL(), clk.Now(), withNonce(r.header.Get("DPoP-Nonce")))))
	st := srv.Stats()
	if st.RefreshTokensPresented != 2 || st.RefreshTokensPresentedTwice != 0 {
		t.Errorf("presented %d, twice %d", st.RefreshTokensPresented, st.RefreshTokensPresentedTwice)
	}
	if p := srv.RefreshPresentations(); p[0].Outcome != oauthtest.RefreshDPoPNonce || p[1].Outcome != oauthtest.RefreshRotated {
		t.Errorf("presentations %v", p)
	}
}

// TestDPoPNonceAPI: with DPoPNonceAPI an API answers a proof without its
// nonce 401 with a use_dpop_nonce challenge and a DPoP-Nonce header (RFC
// 9449 section 9), and every answer carries the current nonce.
func TestDPoPNonceAPI(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPOptional, func(c *oauthtest.Config) { c.DPoPNonceAPI = true })
	api := oauthtest.StartAPI(t, srv, "")
	k := newDPoPKey(t, "PS256")
	tok := boundToken(t, srv, k)
	u := api.URL() + "/data"
	call := func(mods ...proofMod) *rawResp {
		return callAPIDPoP(t, srv, "GET", u, "DPoP", tok, k.proof(t, "GET", u, clk.Now(), append(mods, withATH(tok))...))
	}
	r := call()
	wantChallenge(t, r, `DPoP realm="oauthtest", error="use_dpop_nonce"`, `algs="`)
	nonce := r.header.Get("DPoP-Nonce")
	if as, api := srv.DPoPNonces(); nonce != api || nonce == as {
		t.Fatalf("API nonce %q; server's AS %q API %q", nonce, as, api)
	}
	wantChallenge(t, call(withNonce("old")), `DPoP realm="oauthtest", error="use_dpop_nonce"`)
	r = call(withNonce(nonce))
	if r.status != http.StatusOK || r.header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("with nonce: %d %q", r.status, r.header.Get("DPoP-Nonce"))
	}
	srv.RotateDPoPNonce()
	r = call(withNonce(nonce))
	wantChallenge(t, r, `DPoP realm="oauthtest", error="use_dpop_nonce"`)
	if r = call(withNonce(r.header.Get("DPoP-Nonce"))); r.status != http.StatusOK {
		t.Fatalf("after rotation: %d", r.status)
	}
	if st := srv.Stats(); st.DPoPNonceChallenges[oauthtest.EndpointAPI] != 3 || st.DPoPProofs[oauthtest.EndpointAPI] != 2 {
		t.Errorf("counters %v %v", st.DPoPNonceChallenges, st.DPoPProofs)
	}
	if rec := api.Requests()[0]; rec.Outcome != oauthtest.OutcomeDPoPNonce {
		t.Errorf("outcome %v", rec)
	}
	// Token requests need no nonce when only the APIs ask for one.
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app", DPoPJKT: k.jkt()})
	mustDPoPToken(t, dpopPost(t, srv, oauthtest.PathToken, auth{id: "app"}, refresh(m.RefreshToken), k.proof(t, "POST", srv.TokenURL(), clk.Now())))
}
