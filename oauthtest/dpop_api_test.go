package oauthtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
)

// boundToken mints a DPoP token of client "app" bound to k, for api.
func boundToken(t *testing.T, srv *oauthtest.Server, k *dpopKey) string {
	t.Helper()
	m, err := srv.Mint(oauthtest.Grant{ClientID: "app", DPoPJKT: k.jkt()})
	if err != nil {
		t.Fatal(err)
	}
	return m.AccessToken
}

// wantChallenge expects a 401 whose WWW-Authenticate values include one
// that starts with prefix and contains every part.
func wantChallenge(t *testing.T, r *rawResp, prefix string, parts ...string) {
	t.Helper()
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d %s, want 401", r.status, r.body)
	}
	for _, c := range r.header.Values("WWW-Authenticate") {
		ok := strings.HasPrefix(c, prefix)
		for _, p := range parts {
			ok = ok && strings.Contains(c, p)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no challenge %q with %q in %q", prefix, parts, r.header.Values("WWW-Authenticate"))
}

// TestDPoPAPIAccepts: a bound token with the DPoP scheme and a proof
// carrying its hash (ath) and made with its key is accepted; the record
// shows the scheme and the key, not the proof.
func TestDPoPAPIAccepts(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPOptional)
	api := oauthtest.StartAPI(t, srv, "")
	for _, alg := range []string{"ES256", "EdDSA", "RS256", "PS256"} {
		k := newDPoPKey(t, alg)
		tok := boundToken(t, srv, k)
		u := api.URL() + "/data"
		r := callAPIDPoP(t, srv, "GET", u+"?q=1", "DPoP", tok, k.proof(t, "GET", u, clk.Now(), withATH(tok)))
		if r.status != 200 {
			t.Fatalf("%s: %d %s %q", alg, r.status, r.body, r.header.Values("WWW-Authenticate"))
		}
		rec := api.Requests()[len(api.Requests())-1]
		if rec.Scheme != oauthtest.SchemeDPoP || rec.DPoPJKT != k.jkt() || rec.Outcome != oauthtest.OutcomeOK {
			t.Errorf("%s: record %v", alg, rec)
		}
	}
	// An unbound token is still fine as Bearer in the optional mode.
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app"})
	if r := callAPI(t, srv, api, m.AccessToken); r.status != 200 {
		t.Errorf("bearer: %d", r.status)
	}
	if n := srv.Stats().DPoPProofs[oauthtest.EndpointAPI]; n != 4 {
		t.Errorf("API proofs %d", n)
	}
}

// TestDPoPAPIRefusals: the API's checks (RFC 9449 sections 7.1 and 7.2),
// each with its challenge.
func TestDPoPAPIRefusals(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPOptional)
	api := oauthtest.StartAPI(t, srv, "")
	k, other := newDPoPKey(t, "ES256"), newDPoPKey(t, "ES256")
	tok := boundToken(t, srv, k)
	u := api.URL() + "/data"
	now := clk.Now()
	algs := `algs="ES256 EdDSA PS256 RS256"`
	badProof := func(name, reason, proof string) {
		t.Helper()
		r := callAPIDPoP(t, srv, "GET", u, "DPoP", tok, proof)
		wantChallenge(t, r, `DPoP realm="oauthtest", error="invalid_dpop_proof"`, algs)
		if !strings.Contains(string(r.body), "invalid_dpop_proof") {
			t.Errorf("%s: body %s", name, r.body)
		}
		if n := srv.Stats().DPoPRefusals["api:"+reason]; n == 0 {
			t.Errorf("%s: not counted under %s", name, reason)
		}
	}
	badProof("no ath", oauthtest.DPoPRefusedATH, k.proof(t, "GET", u, now))
	badProof("ath of another token", oauthtest.DPoPRefusedATH, k.proof(t, "GET", u, now, withATH(tok+"x")))
	badProof("wrong htm", oauthtest.DPoPRefusedHTM, k.proof(t, "POST", u, now, withATH(tok)))
	badProof("wrong htu", oauthtest.DPoPRefusedHTU, k.proof(t, "GET", api.URL()+"/other", now, withATH(tok)))
	badProof("htu of the token endpoint", oauthtest.DPoPRefusedHTU, k.proof(t, "GET", srv.TokenURL(), now, withATH(tok)))
	badProof("iat too old", oauthtest.DPoPRefusedIAT, k.proof(t, "GET", u, now.Add(-2*time.Minute), withATH(tok)))
	if r := callAPIDPoP(t, srv, "GET", u, "DPoP", tok); r.status != 401 {
		t.Errorf("no proof: %d", r.status)
	}

	// A proof is good for one request.
	p := k.proof(t, "GET", u, now, withATH(tok))
	if r := callAPIDPoP(t, srv, "GET", u, "DPoP", tok, p); r.status != 200 {
		t.Fatalf("first use %d %q", r.status, r.header.Values("WWW-Authenticate"))
	}
	badProof("replay", oauthtest.DPoPRefusedReplay, srv.LastDPoPProof(oauthtest.EndpointAPI))

	// The proof's key must be the token's.
	r := callAPIDPoP(t, srv, "GET", u, "DPoP", tok, other.proof(t, "GET", u, now, withATH(tok)))
	wantChallenge(t, r, `DPoP realm="oauthtest", error="invalid_token"`, "Invalid DPoP key binding", algs)
	// An unbound token shown with the DPoP scheme proves nothing.
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app"})
	r = callAPIDPoP(t, srv, "GET", u, "DPoP", m.AccessToken, k.proof(t, "GET", u, now, withATH(m.AccessToken)))
	wantChallenge(t, r, `DPoP realm="oauthtest", error="invalid_token"`, "not DPoP-bound")

	// A bound token shown as Bearer is refused per RFC 6750 in the Bearer
	// challenge, and the DPoP challenge says how to present it.
	r = callAPIDPoP(t, srv, "GET", u, "Bearer", tok)
	wantChallenge(t, r, `Bearer realm="oauthtest", error="invalid_token"`, "DPoP-bound")
	wantChallenge(t, r, `DPoP realm="oauthtest", `+algs)
	// Even with a valid proof beside it.
	r = callAPIDPoP(t, srv, "GET", u, "Bearer", tok, k.proof(t, "GET", u, now, withATH(tok)))
	wantChallenge(t, r, `Bearer realm="oauthtest", error="invalid_token"`)

	// No credentials: both schemes are offered.
	r = callAPIDPoP(t, srv, "GET", u, "", "")
	wantChallenge(t, r, `Bearer realm="oauthtest"`)
	wantChallenge(t, r, `DPoP realm="oauthtest", `+algs)

	var outcomes []string
	for _, rq := range api.Requests() {
		outcomes = append(outcomes, rq.Outcome)
	}
	for _, want := range []string{oauthtest.OutcomeInvalidDPoPProof, oauthtest.OutcomeDPoPKeyMismatch, oauthtest.OutcomeDPoPDowngrade, oauthtest.OutcomeMissing} {
		if !strings.Contains(strings.Join(outcomes, " "), want) {
			t.Errorf("no %s in %v", want, outcomes)
		}
	}
	if st := srv.Stats(); st.DPoPRefusals["api:"+oauthtest.DPoPRefusedDowngrade] != 2 || st.DPoPRefusals["api:"+oauthtest.DPoPRefusedKey] != 2 {
		t.Errorf("refusals %v", st.DPoPRefusals)
	}
}

// TestDPoPAPIRequired: with DPoPRequired an API takes only the DPoP
// scheme.
func TestDPoPAPIRequired(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPRequired, func(c *oauthtest.Config) { c.DPoPSigningAlgs = []string{"EdDSA"} })
	api := oauthtest.StartAPI(t, srv, "")
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app"})
	r := callAPI(t, srv, api, m.AccessToken)
	wantChallenge(t, r, `DPoP realm="oauthtest", error="invalid_token"`, `algs="EdDSA"`)
	if api.Requests()[0].Outcome != oauthtest.OutcomeDPoPRequired {
		t.Errorf("outcome %v", api.Requests()[0])
	}
	r = callAPI(t, srv, api, "")
	if v := r.header.Values("WWW-Authenticate"); len(v) != 1 || v[0] != `DPoP realm="oauthtest", algs="EdDSA"` {
		t.Errorf("no credentials: %q", v)
	}
	// An algorithm the server does not take is refused here too.
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, srv, k)
	r = callAPIDPoP(t, srv, "GET", api.URL()+"/", "DPoP", tok, k.proof(t, "GET", api.URL()+"/", clk.Now(), withATH(tok)))
	wantChallenge(t, r, `DPoP realm="oauthtest", error="invalid_dpop_proof"`)
}

// TestDPoPOffAPI: with DPoP off, the DPoP scheme is no credential at all.
func TestDPoPOffAPI(t *testing.T) {
	t.Parallel()
	srv, _, _ := dpopServer(t, oauthtest.DPoPOff)
	api := oauthtest.StartAPI(t, srv, "")
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "app"})
	r := callAPIDPoP(t, srv, "GET", api.URL()+"/", "DPoP", m.AccessToken)
	if v := r.header.Values("WWW-Authenticate"); r.status != 401 || len(v) != 1 || v[0] != `Bearer realm="oauthtest"` {
		t.Errorf("%d %q", r.status, v)
	}
}

// TestDPoPUserinfo: userinfo follows the API's rules.
func TestDPoPUserinfo(t *testing.T) {
	t.Parallel()
	srv, clk, _ := dpopServer(t, oauthtest.DPoPOptional)
	k := newDPoPKey(t, "ES256")
	tok := boundToken(t, srv, k)
	u := srv.URL(oauthtest.PathUserinfo)
	if r := callAPIDPoP(t, srv, "GET", u, "DPoP", tok, k.proof(t, "GET", u, clk.Now(), withATH(tok))); r.status != 200 {
		t.Errorf("DPoP: %d %q", r.status, r.header.Values("WWW-Authenticate"))
	}
	wantChallenge(t, callAPIDPoP(t, srv, "GET", u, "Bearer", tok), `Bearer realm="oauthtest", error="invalid_token"`)
	wantChallenge(t, callAPIDPoP(t, srv, "GET", u, "DPoP", tok, k.proof(t, "GET", u, clk.Now())), `DPoP realm="oauthtest", error="invalid_dpop_proof"`)
	if n := srv.Stats().DPoPProofs[oauthtest.EndpointUserinfo]; n != 1 {
		t.Errorf("userinfo proofs %d", n)
	}
}
