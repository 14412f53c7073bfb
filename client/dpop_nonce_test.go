package client

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/oauthtest"
)

// TestDPoPTokenEndpointNonce: a token endpoint that demands nonces gets
// one retry per request that lacks the current one; the code and the
// refresh token survive the refused first attempt.
func TestDPoPTokenEndpointNonce(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAS: true})
	c := f.loggedIn(t, withDPoP)
	st := f.as.Stats()
	if n := st.DPoPNonceChallenges[oauthtest.EndpointToken]; n != 1 {
		t.Fatalf("login: %d nonce challenges at the token endpoint, want 1", n)
	}
	if n := st.Grants["authorization_code"]; n != 2 {
		t.Fatalf("login: %d authorization_code requests, want 2 (one refused for its nonce, one retry)", n)
	}

	// The nonce is kept: the next refresh needs no retry.
	refreshAgain(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatalf("refresh with the kept nonce: %v", err)
	}
	if n := f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointToken]; n != 1 {
		t.Fatalf("the kept nonce was not used: %d challenges", n)
	}

	// A new nonce: one retry, and the refresh token is not burned.
	f.as.RotateDPoPNonce()
	refreshAgain(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatalf("refresh after the nonce changed: %v", err)
	}
	st = f.as.Stats()
	if st.DPoPNonceChallenges[oauthtest.EndpointToken] != 2 || st.Grants["refresh_token"] != 3 {
		t.Fatalf("after rotation: %d challenges, %d refreshes; want 2 and 3", st.DPoPNonceChallenges[oauthtest.EndpointToken], st.Grants["refresh_token"])
	}
	if st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 {
		t.Fatalf("a refresh token was presented twice (%d) or reuse detected (%d)", st.RefreshTokensPresentedTwice, st.ReuseDetections)
	}
	// The login survives.
	refreshAgain(t, c)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API after the nonce retries: %d %s", code, body)
	}
}

// TestDPoPAPINonce: an API that demands nonces gets exactly one resend,
// then the kept nonce serves later requests; a POST with a replayable body
// is resent with it.
func TestDPoPAPINonce(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAPI: true})
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API: %d %s", code, body)
	}
	if n := f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointAPI]; n != 1 {
		t.Fatalf("%d API nonce challenges, want 1", n)
	}
	if code, _ := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("second call: %d", code)
	}
	if n := f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointAPI]; n != 1 {
		t.Fatalf("the kept nonce was not used: %d challenges", n)
	}
	f.as.RotateDPoPNonce()
	resp, err := hc.Post(f.api.URL(), "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointAPI] != 2 {
		t.Fatalf("POST after rotation: %d, %d challenges", resp.StatusCode, f.as.Stats().DPoPNonceChallenges[oauthtest.EndpointAPI])
	}
	if calls := f.api.Stats().Calls; calls != 5 {
		t.Fatalf("the API saw %d calls, want 5 (two resends)", calls)
	}
}

// TestDPoPInvalidProofTyped: a refused proof is a typed error, and the
// request is not sent again.
func TestDPoPInvalidProofTyped(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired}, wrapTransport(func(rt http.RoundTripper) http.RoundTripper {
		return tamperProof{rt, "/x"}
	}))
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	before := f.api.Stats().Calls
	_, err := hc.Get(f.api.URL() + "/x")
	if !errors.Is(err, ErrInvalidDPoPProof) {
		t.Fatalf("GET: %v, want ErrInvalidDPoPProof", err)
	}
	if n := f.api.Stats().Calls - before; n != 1 {
		t.Fatalf("the API saw %d calls, want 1", n)
	}
}

// TestDPoPTokenEndpointRefusalTyped: a token endpoint that refuses the
// proof, or wants one from a client without DPoP, gives an error that
// matches ErrInvalidDPoPProof after one request; without DPoP the message
// says how to turn it on.
func TestDPoPTokenEndpointRefusalTyped(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := mustNew(t, f.confidential(t, "job", "job-secret-1234", "client_secret_basic"))
	_, err := c.Token(t.Context())
	if !errors.Is(err, ErrInvalidDPoPProof) || !strings.Contains(err.Error(), "set Options.DPoP") {
		t.Fatalf("Token without DPoP from a server that requires it: %v; want ErrInvalidDPoPProof and the hint", err)
	}
	if n := f.as.Stats().Requests[oauthtest.EndpointToken]; n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}

	g := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired}, wrapTransport(func(rt http.RoundTripper) http.RoundTripper {
		return tamperProof{rt, "/token"}
	}))
	cfg := g.confidential(t, "job", "job-secret-1234", "client_secret_basic")
	cfg.DPoP = true
	c2 := mustNew(t, cfg)
	_, err = c2.Token(t.Context())
	if !errors.Is(err, ErrInvalidDPoPProof) || strings.Contains(err.Error(), "set Options.DPoP") {
		t.Fatalf("Token with a refused proof: %v; want ErrInvalidDPoPProof without the hint", err)
	}
	if n := g.as.Stats().Requests[oauthtest.EndpointToken]; n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

// tamperProof breaks the signature of the proofs sent to paths ending in
// suffix.
type tamperProof struct {
	rt     http.RoundTripper
	suffix string
}

func (t tamperProof) RoundTrip(req *http.Request) (*http.Response, error) {
	if p := req.Header.Get(dpop.HeaderDPoP); p != "" && strings.HasSuffix(req.URL.Path, t.suffix) {
		r := req.Clone(req.Context())
		last := p[len(p)-2]
		if last == 'A' {
			last = 'B'
		} else {
			last = 'A'
		}
		r.Header.Set(dpop.HeaderDPoP, p[:len(p)-2]+string(last)+p[len(p)-1:])
		req = r
	}
	return t.rt.RoundTrip(req)
}

// TestDPoPNoProofToOtherOrigins: neither the token nor a proof goes to an
// origin outside the allowed ones, directly or along a redirect.
func TestDPoPNoProofToOtherOrigins(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(dpop.HeaderDPoP) == "" {
			t.Error("the allowed redirecting origin got no proof")
		}
		http.Redirect(w, r, other.URL+"/landed", http.StatusFound)
	}))
	defer redirector.Close()

	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP, func(o *Options) {
		u, _ := url.Parse(f.api.URL())
		o.APIOrigins = []string{u.Scheme + "://" + u.Host, redirector.URL}
	})
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API: %d %s", code, body)
	}
	get(t, hc, other.URL+"/direct")
	get(t, hc, redirector.URL+"/go")
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the other origin saw %d requests, want 2", len(seen))
	}
	for _, h := range seen {
		if h.Get("Authorization") != "" || h.Get(dpop.HeaderDPoP) != "" {
			t.Fatalf("another origin got Authorization %q / DPoP %q", h.Get("Authorization"), h.Get(dpop.HeaderDPoP))
		}
	}
}

// refreshAgain drops the current token, as forceRefresh does, also when
// it came from a refresh: it first reports the token as working, so that
// the cache does not take the drop for a resource server that rejects
// every token.
func refreshAgain(t *testing.T, c *Client) {
	t.Helper()
	r := mustDefault(t, c)
	tok, err := r.cache.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	r.cache.Accepted("", tok)
	if !r.cache.Invalidate(tok) {
		t.Fatal("Invalidate did not drop the current token")
	}
}

// TestDPoPNonceDemandsNeverLoop: a server that asks for a new nonce on
// every answer, at the API and at the token endpoint, gets exactly one
// resend per request, and then its answer: no loop. The refused refresh
// leaves the stored refresh token as it was.
func TestDPoPNonceDemandsNeverLoop(t *testing.T) {
	var hostile sync.Mutex
	var on bool
	var apiCalls, tokenCalls int
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired}, wrapTransport(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			hostile.Lock()
			defer hostile.Unlock()
			if !on || req.Header.Get(dpop.HeaderDPoP) == "" {
				return rt.RoundTrip(req)
			}
			if req.Body != nil {
				req.Body.Close()
			}
			rec := httptest.NewRecorder()
			if strings.HasSuffix(req.URL.Path, "/token") {
				tokenCalls++
				rec.Header().Set("DPoP-Nonce", "token-nonce-"+strconv.Itoa(tokenCalls))
				rec.Header().Set("Content-Type", "application/json")
				rec.WriteHeader(http.StatusBadRequest)
				rec.WriteString(`{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}`)
			} else {
				apiCalls++
				rec.Header().Set("DPoP-Nonce", "api-nonce-"+strconv.Itoa(apiCalls))
				rec.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
				rec.WriteHeader(http.StatusUnauthorized)
			}
			resp := rec.Result()
			resp.Request = req
			return resp, nil
		})
	}))
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	before, err := f.store.Load(t.Context(), c.baseKey().String())
	if err != nil {
		t.Fatal(err)
	}
	rt := before.RefreshToken
	hostile.Lock()
	on = true
	hostile.Unlock()

	resp, err := hc.Get(f.api.URL() + "/items")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || apiCalls != 2 {
		t.Fatalf("API: %d after %d calls; want the 401 after 2 (one resend)", resp.StatusCode, apiCalls)
	}

	forceRefresh(t, c)
	if _, err := c.Token(t.Context()); err == nil {
		t.Fatal("a refresh against a server that always wants another nonce succeeded")
	}
	if tokenCalls != 2 {
		t.Fatalf("%d token requests, want 2 (one retry)", tokenCalls)
	}

	// The refused refresh never reached the server: the stored refresh
	// token is the one from before, and the server never saw a token twice.
	if e, err := f.store.Load(t.Context(), c.baseKey().String()); err != nil || e.RefreshToken != rt {
		t.Fatalf("the stored refresh token changed or is gone (%v)", err)
	}
	if st := f.as.Stats(); st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 {
		t.Fatalf("a refresh token was presented twice (%d) or reuse detected (%d)", st.RefreshTokensPresentedTwice, st.ReuseDetections)
	}
}

// roundTripFunc is a RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestDPoPInvalidTokenRefreshes: with DPoP, a 401 invalid_token (the DPoP
// challenge) still drops the token, refreshes it with the stored key and
// sends the request once more with the new token and a new proof; it is
// not taken for a refused proof.
func TestDPoPInvalidTokenRefreshes(t *testing.T) {
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API: %d %s", code, body)
	}
	first := lastAPIRequest(t, f.api)
	refreshes := f.as.Stats().Grants["refresh_token"]
	f.api.RejectNext(1)
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("after a 401 invalid_token: %d %s", code, body)
	}
	again := lastAPIRequest(t, f.api)
	if n := f.as.Stats().Grants["refresh_token"] - refreshes; n != 1 {
		t.Fatalf("%d refreshes after the 401, want 1", n)
	}
	if again.Token == first.Token || again.Scheme != oauthtest.SchemeDPoP || again.DPoPJKT != first.DPoPJKT {
		t.Fatalf("resend: new token %v, scheme %q, key %q (first %q)", again.Token != first.Token, again.Scheme, again.DPoPJKT, first.DPoPJKT)
	}
	if calls := f.api.Stats().Calls; calls != 3 {
		t.Fatalf("the API saw %d calls, want 3", calls)
	}
}

// TestDPoPNonceFromSuccessfulAnswers: a new nonce that arrives on a
// successful answer (RFC 9449 section 8.2 and 9: a server may hand one
// out with any response) is the one the next proof to that origin
// carries, at the API and at the token endpoint, so no request is
// refused for it.
func TestDPoPNonceFromSuccessfulAnswers(t *testing.T) {
	var mu sync.Mutex
	rotateOn := "" // "api" or "/token": the next 200 there announces a new nonce
	var as *oauthtest.Server
	f := newFixture(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, DPoPNonceAS: true, DPoPNonceAPI: true},
		wrapTransport(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(req *http.Request) (*http.Response, error) {
				resp, err := rt.RoundTrip(req)
				mu.Lock()
				defer mu.Unlock()
				isToken := strings.HasSuffix(req.URL.Path, "/token")
				if err != nil || resp.StatusCode != 200 || req.Header.Get(dpop.HeaderDPoP) == "" ||
					!(rotateOn == "/token" && isToken || rotateOn == "api" && !isToken) {
					return resp, err
				}
				rotateOn = ""
				as.RotateDPoPNonce()
				asNonce, apiNonce := as.DPoPNonces()
				if isToken {
					resp.Header.Set("DPoP-Nonce", asNonce)
				} else {
					resp.Header.Set("DPoP-Nonce", apiNonce)
				}
				return resp, nil
			})
		}))
	as = f.as
	c := f.loggedIn(t, withDPoP)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, f.api.URL()); code != 200 {
		t.Fatalf("API: %d %s", code, body)
	}
	challenges := func(endpoint string) int { return f.as.Stats().DPoPNonceChallenges[endpoint] }

	mu.Lock()
	rotateOn = "api"
	mu.Unlock()
	get(t, hc, f.api.URL()) // answered 200 with a new nonce
	before := challenges(oauthtest.EndpointAPI)
	if code, body := get(t, hc, f.api.URL()); code != 200 || challenges(oauthtest.EndpointAPI) != before {
		t.Fatalf("API after a new nonce on a 200: %d %s, %d more challenges; want 200 and none", code, body, challenges(oauthtest.EndpointAPI)-before)
	}

	refreshAgain(t, c) // the rotation above changed the token endpoint's nonce too: one challenge
	mu.Lock()
	rotateOn = "/token"
	mu.Unlock()
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	before = challenges(oauthtest.EndpointToken)
	refreshAgain(t, c)
	if _, err := c.Token(t.Context()); err != nil || challenges(oauthtest.EndpointToken) != before {
		t.Fatalf("refresh after a new nonce on a 200: %v, %d more challenges; want none", err, challenges(oauthtest.EndpointToken)-before)
	}
}
