package transport_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// Tests of the outgoing copy of a request: the caller's request is never
// changed, and what goes out carries exactly one Authorization value, the
// token, in a slice of its own.

// RoundTrip never modifies the caller's request, even with a Prepare hook
// that adds to an existing header, and even when the caller set its own
// Authorization header.
func TestRoundTripDoesNotMutateRequest(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
		if n == 0 {
			return respond(r, 401, invalidTokenHeader(), ""), nil
		}
		return respond(r, 200, nil, ""), nil
	}}
	tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) {
		tr.Prepare = func(r *http.Request, _ *oauth2.Token) error {
			r.Header.Add("Accept", "text/plain") // appends to a shared slice: must not reach the caller
			r.Header.Set("X-Signed", "yes")
			return nil
		}
	})
	req, err := http.NewRequest("PUT", "https://api.example.com/doc?id=1", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	accept := make([]string, 1, 4) // spare capacity: an append in place would be visible here
	accept[0] = "application/json"
	req.Header["Accept"] = accept
	req.Header.Set("Authorization", "Basic caller-set")
	before := req.Header.Clone()
	beforeURL := req.URL.String()
	body := req.Body
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff(before, req.Header); diff != "" {
		t.Errorf("caller's header changed (-before +after):\n%s", diff)
	}
	if got := accept[:cap(accept)][1]; got != "" {
		t.Errorf("caller's Accept backing array was written: %q", got)
	}
	if req.URL.String() != beforeURL || req.Body != body || req.Method != "PUT" {
		t.Error("caller's request fields changed")
	}
	reqs := base.requests()
	if len(reqs) != 2 || reqs[1].Body != "body" {
		t.Fatalf("base saw %+v", reqs)
	}
	// What Prepare added is on the wire, on the first request and on the
	// resend, next to the caller's headers.
	for i, r := range reqs {
		if got := r.Header.Values("X-Signed"); len(got) != 1 || got[0] != "yes" {
			t.Errorf("request %d: X-Signed at the base = %q, want [yes]", i, got)
		}
		if diff := cmp.Diff([]string{"application/json", "text/plain"}, r.Header.Values("Accept")); diff != "" {
			t.Errorf("request %d: Accept at the base (-want +got):\n%s", i, diff)
		}
		if got := r.Header.Values("Authorization"); len(got) != 1 || !strings.HasPrefix(got[0], "Bearer ") {
			t.Errorf("request %d: Authorization at the base = %q, want only the token (not the caller's Basic)", i, got)
		}
	}
}

// A caller-set Authorization header under a non-canonical key
// ("authorization", "AUTHORIZATION") is not sent next to the token: the
// allowed origin sees exactly one Authorization value, the token. The
// caller's header map is untouched.
func TestNonCanonicalAuthorizationReplaced(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seenAuth [][]string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Values("Authorization"))
		mu.Unlock()
	}))
	defer srv.Close()
	src := newFakeSource()
	tr := mustNew(t, src, toServer(srv))
	for _, keys := range [][]string{{"authorization"}, {"AUTHORIZATION"}, {"Authorization", "authorization", "aUTHORIZATION"}} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		for _, k := range keys {
			req.Header[k] = []string{"Basic dXNlcjpwYXNz"}
		}
		before := fmt.Sprint(req.Header)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if after := fmt.Sprint(req.Header); after != before {
			t.Errorf("caller's header changed: %s -> %s", before, after)
		}
	}
	want := "Bearer " + src.current(t).AccessToken
	mu.Lock()
	defer mu.Unlock()
	for i, got := range seenAuth {
		if len(got) != 1 || got[0] != want {
			t.Errorf("request %d: server saw Authorization %q, want only the token", i, got)
		}
	}
}

// The same with a token type that Prepare sends (DPoP): the caller's
// variants are dropped before Prepare runs, so only what Prepare sets goes
// out.
func TestNonCanonicalAuthorizationReplacedForPrepareTypes(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	src.tokenType = "DPoP"
	var sent http.Header
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r.Header
		return respond(r, 200, nil, ""), nil
	})
	tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) {
		tr.PrepareTokenTypes = []string{"DPoP"}
		tr.Prepare = func(r *http.Request, tok *oauth2.Token) error {
			r.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			return nil
		}
	})
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	req.Header["authorization"] = []string{"Basic dXNlcjpwYXNz"}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var n int
	for k := range sent {
		if strings.EqualFold(k, "Authorization") {
			n++
		}
	}
	if n != 1 || sent.Get("Authorization") != "DPoP "+src.current(t).AccessToken {
		t.Errorf("sent %d Authorization keys: %v", n, sent)
	}
	if len(req.Header["authorization"]) != 1 {
		t.Error("caller's header changed")
	}
}

// Every request gets its own Authorization slice: a Base that rewrites a
// header value in place (a redacting logger, against the RoundTripper
// contract) cannot change what later requests send.
func TestBaseRewritingHeaderValuesInPlace(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	var sent []string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r.Header.Get("Authorization"))
		r.Header["Authorization"][0] = "REDACTED" // misbehaving middleware
		return respond(r, 200, nil, ""), nil
	})
	tr := mustNew(t, src, toAPI(base))
	for range 3 {
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := "Bearer " + src.current(t).AccessToken
	for i, got := range sent {
		if got != want {
			t.Errorf("request %d sent Authorization %q, want the token", i, got)
		}
	}
}
