package transport_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// api is a loopback resource server that rejects revoked tokens.
type api struct {
	*site
	revoked map[string]bool // guarded by site.mu; Authorization values answered 401
	all401  bool            // guarded by site.mu; reject every token
}

func newAPI(t *testing.T) *api {
	t.Helper()
	a := &api{revoked: map[string]bool{}}
	a.site = newSite(t, false, func(w http.ResponseWriter, r *http.Request, h hit) {
		a.mu.Lock()
		reject := a.all401 || a.revoked[h.Auth]
		a.mu.Unlock()
		if reject {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token", error_description="revoked"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "first 401 body")
			return
		}
		io.WriteString(w, "ok:"+h.Body)
	})
	return a
}

func (a *api) revoke(tok *oauth2.Token) {
	a.mu.Lock()
	a.revoked["Bearer "+tok.AccessToken] = true
	a.mu.Unlock()
}

// client is an HTTP client whose transport sends src's tokens to a.
func (a *api) client(t *testing.T, src transport.Source) *http.Client {
	t.Helper()
	return &http.Client{Transport: mustNew(t, src, toServer(a.srv))}
}

// unreplayable hides a reader's type so that http.NewRequest sets no GetBody.
type unreplayable struct{ io.Reader }

// A 401 with error="invalid_token" invalidates exactly the rejected token
// and resends the request once with a fresh one, when its body can be
// replayed; whatever the resend gets goes to the caller.
func TestUnauthorizedInvalidToken(t *testing.T) {
	t.Parallel()

	t.Run("replayable body: one invalidate, one refresh, one resend, body intact", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		src := newFakeSource()
		tok1 := src.current(t)
		a.revoke(tok1)
		req, _ := http.NewRequest("POST", a.srv.URL+"/items", strings.NewReader(`{"name":"x"}`))
		if req.GetBody == nil {
			t.Fatal("test setup: request not replayable")
		}
		resp, err := a.client(t, src).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != `ok:{"name":"x"}` {
			t.Fatalf("final response %d %q", resp.StatusCode, body)
		}
		refreshes, _, invalidated, issued := src.stats()
		if refreshes != 1 || len(invalidated) != 1 || invalidated[0] != tok1 {
			t.Fatalf("refreshes = %d, invalidated = %v; want 1 refresh and exactly tok1 invalidated", refreshes, invalidated)
		}
		want := []hit{
			{Path: "/items", Auth: "Bearer " + tok1.AccessToken, Body: `{"name":"x"}`},
			{Path: "/items", Auth: "Bearer " + issued[1].AccessToken, Body: `{"name":"x"}`},
		}
		if diff := cmp.Diff(want, a.got(), cmpopts.IgnoreFields(hit{}, "Headers")); diff != "" {
			t.Errorf("server saw (-want +got):\n%s", diff)
		}
	})

	t.Run("no body: resent", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		src := newFakeSource()
		a.revoke(src.current(t))
		resp, err := a.client(t, src).Get(a.srv.URL + "/items")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(a.got()) != 2 {
			t.Fatalf("status %d after %d hits, want 200 after 2", resp.StatusCode, len(a.got()))
		}
	})

	t.Run("non-replayable body: no resend, 401 to caller, token invalidated", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		src := newFakeSource()
		tok1 := src.current(t)
		a.revoke(tok1)
		client := a.client(t, src)
		req, _ := http.NewRequest("POST", a.srv.URL+"/upload", unreplayable{strings.NewReader("stream")})
		if req.GetBody != nil {
			t.Fatal("test setup: request is replayable")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || string(body) != "first 401 body" {
			t.Fatalf("response %d %q, want the server's 401 intact", resp.StatusCode, body)
		}
		if e, ok := transport.BearerErrorFrom(resp); !ok || e.Code != transport.ErrorCodeInvalidToken {
			t.Errorf("BearerErrorFrom = %+v, %v", e, ok)
		}
		refreshes, _, invalidated, _ := src.stats()
		if len(a.got()) != 1 || len(invalidated) != 1 || invalidated[0] != tok1 || refreshes != 0 {
			t.Fatalf("hits = %d, invalidated = %v, refreshes = %d; want 1 hit, tok1 invalidated, no refresh yet", len(a.got()), invalidated, refreshes)
		}
		// The invalidation took effect: the next request carries a new token.
		resp, err = client.Get(a.srv.URL + "/next")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || src.current(t) == tok1 {
			t.Errorf("next request: status %d, token unchanged %v", resp.StatusCode, src.current(t) == tok1)
		}
	})

	t.Run("two 401s in a row: exactly one resend", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		a.all401 = true
		src := newFakeSource()
		tok1 := src.current(t)
		req, _ := http.NewRequest("PUT", a.srv.URL+"/doc", strings.NewReader("v2"))
		resp, err := a.client(t, src).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || string(body) != "first 401 body" {
			t.Fatalf("response %d %q, want the second 401", resp.StatusCode, body)
		}
		hits := a.got()
		refreshes, _, invalidated, _ := src.stats()
		if len(hits) != 2 || refreshes != 1 || len(invalidated) != 1 || invalidated[0] != tok1 {
			t.Fatalf("hits = %d, refreshes = %d, invalidated = %d; want 2, 1, 1", len(hits), refreshes, len(invalidated))
		}
		if hits[0].Auth == hits[1].Auth || hits[1].Body != "v2" {
			t.Errorf("resend %+v did not carry a new token and the body", hits[1])
		}
	})
}

// Which 401s count as "token rejected".
func TestUnauthorizedChallenges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		lines      []string // WWW-Authenticate lines
		any401     bool
		status     int
		wantResend bool
	}{
		{"invalid_token", []string{`Bearer error="invalid_token"`}, false, 401, true},
		{"unquoted, case-insensitive scheme and name", []string{`bearer ERROR=invalid_token`}, false, 401, true},
		{"after a Basic challenge", []string{`Basic realm="x", Bearer realm="api", error="invalid_token"`}, false, 401, true},
		{"on a second header line", []string{`Basic realm="x"`, `Bearer error="invalid_token"`}, false, 401, true},
		{"comma inside a quoted description", []string{`Bearer error_description="a, b, error=\"invalid_token\"", error="invalid_token"`}, false, 401, true},
		{"invalid_token only inside a quoted string", []string{`Bearer error_description="error=invalid_token", error="invalid_request"`}, false, 401, false},
		{"bare Bearer challenge", []string{`Bearer realm="api"`}, false, 401, false},
		{"no challenge", nil, false, 401, false},
		{"invalid_token for another scheme", []string{`DPoP error="invalid_token"`}, false, 401, false},
		{"no challenge, any-401 option", nil, true, 401, true},
		{"403 insufficient_scope", []string{`Bearer error="insufficient_scope", scope="write"`}, false, 403, false},
		{"403 invalid_token", []string{`Bearer error="invalid_token"`}, false, 403, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeSource()
			tok1 := src.current(t)
			base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
				if n > 0 {
					return respond(r, 200, nil, "ok"), nil
				}
				h := http.Header{}
				for _, l := range tt.lines {
					h.Add("WWW-Authenticate", l)
				}
				return respond(r, tt.status, h, ""), nil
			}}
			tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) { tr.InvalidateOnAny401 = tt.any401 })
			req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			_, _, invalidated, _ := src.stats()
			resent := len(base.requests()) == 2
			if resent != tt.wantResend || (len(invalidated) == 1) != tt.wantResend {
				t.Fatalf("resent = %v, invalidated = %d; want resend %v", resent, len(invalidated), tt.wantResend)
			}
			if tt.wantResend && (invalidated[0] != tok1 || resp.StatusCode != 200) {
				t.Errorf("invalidated %p (want %p), final status %d", invalidated[0], tok1, resp.StatusCode)
			}
		})
	}
}

// Many requests rejected together with the same token: each invalidates
// exactly that token (only the first CAS succeeds), one refresh happens, and
// every request is resent once with the new token.
func TestUnauthorizedConcurrent(t *testing.T) {
	t.Parallel()
	const n = 20
	src := newFakeSource()
	tok1 := src.current(t)
	// No request is answered before all n have been sent with tok1.
	var mu sync.Mutex
	arrived := 0
	allSent := make(chan struct{})
	base := &memBase{answer: func(_ int, r *http.Request) (*http.Response, error) {
		if r.Header.Get("Authorization") != "Bearer "+tok1.AccessToken {
			return respond(r, 200, nil, ""), nil
		}
		mu.Lock()
		arrived++
		if arrived == n {
			close(allSent)
		}
		mu.Unlock()
		<-allSent
		return respond(r, 401, invalidTokenHeader(), ""), nil
	}}
	tr := mustNew(t, src, toAPI(base))
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	refreshes, _, invalidated, _ := src.stats()
	if len(invalidated) != n {
		t.Errorf("Invalidate called %d times, want %d (once per rejected request)", len(invalidated), n)
	}
	for _, tok := range invalidated {
		if tok != tok1 {
			t.Fatalf("a token other than the rejected one was invalidated")
		}
	}
	if refreshes != 1 {
		t.Errorf("refreshes = %d, want 1 (the CAS spares the fresh token)", refreshes)
	}
	if got := len(base.requests()); got != 2*n {
		t.Errorf("base got %d requests, want %d (each resent once)", got, 2*n)
	}
}

// A source without Invalidator that keeps returning the rejected token: no
// resend (it could not succeed), the 401 goes to the caller.
func TestUnauthorizedSourceWithoutInvalidator(t *testing.T) {
	t.Parallel()
	tok := &oauth2.Token{AccessToken: "static-token"}
	src := transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil })
	base := &memBase{answer: func(_ int, r *http.Request) (*http.Response, error) {
		return respond(r, 401, invalidTokenHeader(), ""), nil
	}}
	tr := mustNew(t, src, toAPI(base))
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(base.requests()) != 1 {
		t.Fatalf("status %d after %d requests, want 401 after 1", resp.StatusCode, len(base.requests()))
	}
}

// A 401 from an origin that got no token is none of the transport's business.
func TestUnauthorizedOtherOrigin(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	base := &memBase{answer: func(_ int, r *http.Request) (*http.Response, error) {
		return respond(r, 401, invalidTokenHeader(), ""), nil
	}}
	tr := mustNew(t, src, toAPI(base))
	req, _ := http.NewRequest("GET", "https://other.example.com/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, calls, invalidated, _ := src.stats()
	if len(base.requests()) != 1 || len(invalidated) != 0 || calls != 0 {
		t.Fatalf("requests %d, invalidated %d, token calls %d; want 1, 0, 0", len(base.requests()), len(invalidated), calls)
	}
}

// The first 401 is drained and closed before the resend goes out (so its
// connection can be reused), and only the resend's answer reaches the caller.
func TestUnauthorizedClosesFirstResponseBeforeResend(t *testing.T) {
	t.Parallel()
	first := &trackedBody{Reader: strings.NewReader("rejected")}
	var closedBeforeResend atomic.Bool
	base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
		if n == 0 {
			resp := respond(r, 401, invalidTokenHeader(), "")
			resp.Body = first
			return resp, nil
		}
		closedBeforeResend.Store(first.closed.Load())
		return respond(r, 200, nil, "ok"), nil
	}}
	tr := mustNew(t, newFakeSource(), toAPI(base))
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Body == first {
		t.Fatalf("caller got %d (first body %v)", resp.StatusCode, resp.Body == first)
	}
	if !closedBeforeResend.Load() {
		t.Error("first 401 response was not closed before the resend")
	}
}

// feedbackSource is a fakeSource that records what the transport reports
// through Feedback, with the origins.
type feedbackSource struct {
	*fakeSource
	mu       sync.Mutex
	accepted []feedback
	rejected []feedback
}

type feedback struct {
	origin string
	tok    *oauth2.Token
}

func (s *feedbackSource) Accepted(origin string, tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append(s.accepted, feedback{origin, tok})
}

func (s *feedbackSource) Rejected(origin string, tok *oauth2.Token) bool {
	s.mu.Lock()
	s.rejected = append(s.rejected, feedback{origin, tok})
	s.mu.Unlock()
	return s.fakeSource.Invalidate(tok)
}

// The source hears, with the canonical origin (scheme://host:port), that a
// token works from every answer but a 401 or a 5xx, including the answer
// to the resend after a 401 (with the fresh token), never about a token a
// 401 or a 5xx answered; and it hears of the rejection through Rejected,
// not Invalidate.
func TestFeedback(t *testing.T) {
	t.Parallel()
	src := &feedbackSource{fakeSource: newFakeSource()}
	status := atomic.Int32{}
	first := src.current(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/revoked" && r.Header.Get("Authorization") == "Bearer "+first.AccessToken {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	hc := &http.Client{Transport: mustNew(t, src, toServer(srv))}
	get := func(path string, code int) {
		t.Helper()
		status.Store(int32(code))
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("/ok", http.StatusOK)
	get("/forbidden", http.StatusForbidden)
	get("/down", http.StatusServiceUnavailable)
	get("/revoked", http.StatusOK) // 401 for the first token, resend with a new one: 200
	second := src.current(t)
	origin := srv.URL // http://127.0.0.1:port, already in the canonical form
	src.mu.Lock()
	defer src.mu.Unlock()
	want := []feedback{{origin, first}, {origin, first}, {origin, second}}
	if len(src.accepted) != len(want) {
		t.Fatalf("Accepted called %d times, want %d (200, 403, the resend's 200)", len(src.accepted), len(want))
	}
	for i := range want {
		if src.accepted[i] != want[i] {
			t.Fatalf("Accepted call %d = (%q, %p), want (%q, %p)", i, src.accepted[i].origin, src.accepted[i].tok, want[i].origin, want[i].tok)
		}
	}
	if len(src.rejected) != 1 || src.rejected[0] != (feedback{origin, first}) {
		t.Fatalf("Rejected calls %v, want one for the first token from %s", src.rejected, origin)
	}
	if _, _, invalidated, _ := src.stats(); len(invalidated) != 1 {
		t.Fatalf("the rejected token was not discarded")
	}
}
