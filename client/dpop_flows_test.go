package client

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
)

// lastParams returns the parameters of endpoint's last request.
func lastParams(t *testing.T, as *oauthtest.Server, endpoint string) map[string][]string {
	t.Helper()
	reqs := as.EndpointRequests(endpoint)
	if len(reqs) == 0 {
		t.Fatalf("no request at %s", endpoint)
	}
	return reqs[len(reqs)-1].Params
}

// TestDPoPCodeBoundWithPAR: the pushed authorization request names the
// login's key twice, by dpop_jkt and by a proof (the server refuses the
// push if the two differ), so the code is redeemed only with a proof of
// that key. The push answers the server's nonce demand with exactly one
// more push, and the nonce its answer carries serves the code exchange.
func TestDPoPCodeBoundWithPAR(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAS: true})
	c := f.loggedIn(t, withDPoP, func(o *Options) { o.UsePAR = true })
	storedKey(t, f, c)
	// The server shows the value redacted; that it binds the code to it,
	// so that only a proof of that key redeems it, is oauthtest's promise.
	if got := lastParams(t, f.as, oauthtest.EndpointPAR)["dpop_jkt"]; len(got) != 1 {
		t.Fatalf("PAR dpop_jkt %q, want one", got)
	}
	if st := f.as.Stats(); st.DPoPProofs[oauthtest.EndpointPAR] != 1 || st.DPoPNonceChallenges[oauthtest.EndpointPAR] != 1 ||
		st.PushedRequests != 1 || len(st.DPoPRefusals) != 0 {
		t.Fatalf("PAR: %d proofs accepted, %d nonce demands, %d pushed, refusals %v; want 1, 1, 1, none",
			st.DPoPProofs[oauthtest.EndpointPAR], st.DPoPNonceChallenges[oauthtest.EndpointPAR], st.PushedRequests, st.DPoPRefusals)
	}
	// The PAR answer carried the server's nonce, kept for its origin: the
	// code exchange needs no retry.
	if st := f.as.Stats(); st.Grants["authorization_code"] != 1 || st.DPoPNonceChallenges[oauthtest.EndpointToken] != 0 || st.CodeExchanges != 1 {
		t.Fatalf("code requests %d, nonce challenges %d, exchanges %d; want 1, 0, 1", st.Grants["authorization_code"], st.DPoPNonceChallenges[oauthtest.EndpointToken], st.CodeExchanges)
	}
}

// TestDPoPCodeBoundBrowser: without PAR the authorization request itself
// carries dpop_jkt.
func TestDPoPCodeBoundBrowser(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	storedKey(t, f, c)
	if got := lastParams(t, f.as, oauthtest.EndpointAuthorize)["dpop_jkt"]; len(got) != 1 {
		t.Fatalf("authorization request dpop_jkt %q, want one", got)
	}
}

// TestDPoPDeviceLogin: the device flow's polls carry proofs (one nonce
// retry) and the token is bound to the stored key.
func TestDPoPDeviceLogin(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAS: true, DeviceInterval: 1e6}, silentDevicePrompt)
	c := f.client(t, withDPoP)
	if err := c.Login(t.Context(), WithDevice()); err != nil {
		t.Fatalf("device login: %v", err)
	}
	jkt := thumbprintOf(t, storedKey(t, f, c))
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 || lastAPIRequest(t, f.api).DPoPJKT != jkt {
		t.Fatalf("API: %d %s, key %q want %q", code, body, lastAPIRequest(t, f.api).DPoPJKT, jkt)
	}
	if n := f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointToken]; n != 1 {
		t.Fatalf("%d nonce challenges, want 1", n)
	}
}

// TestDPoPForResource: a token minted for another API from the login's
// bound refresh token is bound to the same key, which its own entry keeps.
func TestDPoPForResource(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	apiB := oauthtest.StartAPI(t, f.as, "")
	c := f.loggedIn(t, withDPoP, func(o *Options) { o.Resources = []string{f.api.Resource(), apiB.Resource()} })
	jkt := thumbprintOf(t, storedKey(t, f, c))
	rb, err := c.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := rb.HTTPClient(t.Context())
	if code, body := get(t, hb, apiB.URL()); code != 200 {
		t.Fatalf("API B: %d %s", code, body)
	}
	if r := lastAPIRequest(t, apiB); r.Scheme != oauthtest.SchemeDPoP || r.DPoPJKT != jkt {
		t.Fatalf("API B: scheme %q key %q, want DPoP with %q", r.Scheme, r.DPoPJKT, jkt)
	}
	e, err := f.store.Load(t.Context(), c.resourceKey([]string{apiB.Resource()}).String())
	if err != nil || thumbprintOf(t, e.KeyPair) != jkt {
		t.Fatalf("the resource's entry: %v", err)
	}
}

// TestDPoPClockSkew: a server whose clock runs ten minutes ahead refuses
// proofs more than a minute old by its clock; the skew its answers show
// (discovery's first) corrects every proof's iat, so the login, the
// refresh and the API calls work.
func TestDPoPClockSkew(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, ClockOffset: 10 * time.Minute})
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API: %d %s", code, body)
	}
	refreshAgain(t, c)
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API after the refresh: %d %s", code, body)
	}
	if r := f.as.Stats().DPoPRefusals; len(r) != 0 {
		t.Fatalf("proofs refused: %v", r)
	}
}

// TestDPoPAPIClockSkew: a process that starts from stored tokens has not
// heard the authorization server's clock, ten minutes ahead, when it first
// calls the API. The API refuses the proof's time; its Date shows the
// skew, and the request is sent once more with the time corrected. Later
// requests are corrected from the start. An API whose refusal shows no
// skew (or an absurd one) gets ErrInvalidDPoPProof, without a resend.
func TestDPoPAPIClockSkew(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, ClockOffset: 10 * time.Minute})
	f.loggedIn(t, withDPoP).Close()
	before := f.as.Stats()

	c := f.client(t, withDPoP) // a new process: discovery and tokens from the store
	hc, _ := c.HTTPClient(t.Context())
	for round := range 2 {
		if code, body := get(t, hc, f.api.URL()); code != 200 {
			t.Fatalf("round %d: API answered %d: %s", round, code, body)
		}
	}
	st := f.as.Stats()
	if n := st.DPoPRefusals[oauthtest.EndpointAPI+":"+oauthtest.DPoPRefusedIAT]; n != 1 {
		t.Fatalf("%d API refusals for the proof's time, want 1 (the first request only): %v", n, st.DPoPRefusals)
	}
	if st.Requests[oauthtest.EndpointToken] != before.Requests[oauthtest.EndpointToken] {
		t.Fatal("the new process asked the token endpoint; the test needs one that starts from stored tokens")
	}
	if calls := f.api.Stats().Calls; calls != 3 {
		t.Fatalf("the API saw %d calls, want 3 (one resend)", calls)
	}

	// Refusals whose Date cannot be the reason: none, the same clock, or
	// a clock years away.
	calls := map[string]int{}
	g := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired}, wrapTransport(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			date, ok := map[string]string{"/nodate": "", "/sameclock": time.Now().UTC().Format(http.TimeFormat),
				"/absurd": time.Now().AddDate(5, 0, 0).UTC().Format(http.TimeFormat)}[req.URL.Path]
			if !ok {
				return rt.RoundTrip(req)
			}
			calls[req.URL.Path]++
			h := http.Header{"Www-Authenticate": {`DPoP error="invalid_dpop_proof"`}}
			if date != "" {
				h.Set("Date", date)
			}
			return &http.Response{StatusCode: 401, Header: h, Body: http.NoBody, Request: req}, nil
		})
	}))
	c2 := g.loggedIn(t, withDPoP)
	hc2, _ := c2.HTTPClient(t.Context())
	for _, path := range []string{"/nodate", "/sameclock", "/absurd"} {
		if _, err := hc2.Get(g.api.URL() + path); !errors.Is(err, ErrInvalidDPoPProof) || calls[path] != 1 {
			t.Errorf("%s: %v after %d calls; want ErrInvalidDPoPProof after 1", path, err, calls[path])
		}
	}
}
