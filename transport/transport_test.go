package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

func TestNewValidatesOrigins(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	tests := []struct {
		name     string
		origins  []string
		loopback bool
		want     error // nil: accepted
	}{
		{"https", []string{"https://api.example.com"}, false, nil},
		{"https with port and slash", []string{"https://api.example.com:8443/"}, false, nil},
		{"http non-loopback", []string{"http://api.example.com"}, false, transport.ErrInsecureURL},
		{"http non-loopback even with opt-in", []string{"http://example.com"}, true, transport.ErrInsecureURL},
		{"http 127.0.0.1 without opt-in", []string{"http://127.0.0.1:8080"}, false, transport.ErrInsecureURL},
		{"http localhost without opt-in", []string{"http://localhost:8080"}, false, transport.ErrInsecureURL},
		{"http 127.0.0.1 with opt-in", []string{"http://127.0.0.1:8080"}, true, nil},
		{"http 127.1.2.3 with opt-in", []string{"http://127.1.2.3"}, true, nil},
		{"http localhost with opt-in", []string{"http://LOCALHOST:8080"}, true, nil},
		{"http ::1 with opt-in", []string{"http://[::1]:8080"}, true, nil},
		{"http 10.0.0.1 with opt-in", []string{"http://10.0.0.1"}, true, transport.ErrInsecureURL},
		{"http localhost.example.com with opt-in", []string{"http://localhost.example.com"}, true, transport.ErrInsecureURL},
		{"ftp", []string{"ftp://api.example.com"}, false, transport.ErrInsecureURL},
		{"one bad among good", []string{"https://a.example.com", "http://b.example.com"}, false, transport.ErrInsecureURL},
		{"no origins", nil, false, transport.ErrInvalidConfig},
		{"path", []string{"https://api.example.com/v1"}, false, transport.ErrInvalidConfig},
		{"query", []string{"https://api.example.com?x=1"}, false, transport.ErrInvalidConfig},
		{"user info", []string{"https://user:pw@api.example.com"}, false, transport.ErrInvalidConfig},
		{"no host", []string{"https://"}, false, transport.ErrInvalidConfig},
		{"not a URL", []string{"api.example.com"}, false, transport.ErrInvalidConfig},
		{"bad port", []string{"https://api.example.com:99999"}, false, transport.ErrInvalidConfig},
		{"port with leading zero", []string{"https://api.example.com:0443"}, false, transport.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := transport.New(src, func(tr *transport.Options) {
				tr.Origins = tt.origins
				tr.AllowInsecureLoopback = tt.loopback
			})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: err = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "transport:") {
				t.Errorf("error %q does not start with the package name", err)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error %q leaks user info", err)
			}
		})
	}
	if _, err := transport.New(nil, func(tr *transport.Options) { tr.Origins = []string{"https://a.example.com"} }); !errors.Is(err, transport.ErrInvalidConfig) {
		t.Errorf("New(nil source): err = %v, want ErrInvalidConfig", err)
	}
}

// A Transport that New did not create (its zero value) fails every
// request with a typed error instead of sending anything.
func TestZeroTransportRefuses(t *testing.T) {
	t.Parallel()
	var tr transport.Transport
	for range 2 {
		req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
		resp, err := tr.RoundTrip(req)
		if !errors.Is(err, transport.ErrInvalidConfig) || resp != nil {
			t.Fatalf("RoundTrip = %v, %v; want nil, ErrInvalidConfig", resp, err)
		}
	}
}

func TestOriginMatching(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	base := &memBase{}
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com", "https://files.example.com:8443", "https://[2001:db8::1]"}
	})
	tests := []struct {
		url       string
		wantToken bool
	}{
		{"https://api.example.com/v1", true},
		{"https://api.example.com:443/v1", true},
		{"https://API.Example.COM/v1", true},
		{"HTTPS://api.example.com/v1", true},
		{"https://api.example.com:8443/v1", false},
		{"http://api.example.com/v1", false},
		{"http://api.example.com:443/v1", false},
		{"https://api.example.com.evil.com/v1", false},
		{"https://evil.com/https://api.example.com", false},
		{"https://files.example.com:8443/a", true},
		{"https://files.example.com/a", false},
		{"https://[2001:db8::1]/a", true},
		{"https://[2001:db8::1]:443/a", true},
		{"https://[2001:db8::2]/a", false},
		{"https://api.example.com./v1", false}, // trailing dot: another name, no token (safe side)
	}
	want := "Bearer " + src.current(t).AccessToken
	for _, tt := range tests {
		req, err := http.NewRequest("GET", tt.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		resp.Body.Close()
		got := base.requests()
		auth := got[len(got)-1].Auth
		if (auth == want) != tt.wantToken || (!tt.wantToken && auth != "") {
			t.Errorf("%s: token sent = %v (Authorization present %v), want %v", tt.url, auth == want, auth != "", tt.wantToken)
		}
	}
}

func TestTokenTypes(t *testing.T) {
	t.Parallel()
	prepared := func(req *http.Request, tok *oauth2.Token) error {
		if strings.EqualFold(tok.TokenType, "dpop") {
			req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			req.Header.Set("DPoP", "proof")
		}
		return nil
	}
	tests := []struct {
		name       string
		typ        string
		prepare    bool
		wantScheme string // "" with wantErr
		wantErr    error
	}{
		{"Bearer", "Bearer", false, "Bearer", nil},
		{"bearer lower case", "bearer", false, "Bearer", nil},
		{"BEARER", "BEARER", false, "Bearer", nil},
		{"empty means Bearer", "", false, "Bearer", nil},
		{"DPoP without hook", "DPoP", false, "", transport.ErrUnsupportedTokenType},
		{"mac", "mac", false, "", transport.ErrUnsupportedTokenType},
		{"N_A", "N_A", false, "", transport.ErrUnsupportedTokenType},
		{"DPoP with hook declaring it", "DPoP", true, "DPoP", nil},
		{"mac with hook not declaring it", "mac", true, "", transport.ErrUnsupportedTokenType},
		{"Bearer with hook", "Bearer", true, "Bearer", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{tokenType: tt.typ}
			src.cur = &oauth2.Token{AccessToken: "tok-" + strings.ReplaceAll(tt.name, " ", "_"), TokenType: tt.typ}
			base := &memBase{}
			tr := mustNew(t, src, func(tr *transport.Options) {
				tr.Base = base
				tr.Origins = []string{"https://api.example.com"}
				if tt.prepare {
					tr.Prepare = prepared
					tr.PrepareTokenTypes = []string{"dpop"}
				}
			})
			req, body := bodyRequest(t, "POST", "https://api.example.com/x", "payload", false, nil)
			resp, err := tr.RoundTrip(req)
			if body.closes.Load() != 1 {
				t.Errorf("body closed %d times, want 1", body.closes.Load())
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || resp != nil {
					t.Fatalf("RoundTrip = %v, %v; want nil, %v", resp, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), src.cur.AccessToken) {
					t.Errorf("error %q contains the token", err)
				}
				if n := len(base.requests()); n != 0 {
					t.Errorf("base got %d requests, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := base.requests()[0].Auth, tt.wantScheme+" "+src.cur.AccessToken; got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
		})
	}
}

// The Authorization value is computed once per token pointer: requests with
// the same token share one precomputed string (each in its own one-element
// slice); a new token gets a new one.
func TestAuthorizationPrecomputedPerToken(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	var mu sync.Mutex
	var values [][]string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		values = append(values, r.Header["Authorization"])
		mu.Unlock()
		return respond(r, 200, nil, ""), nil
	})
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
	})
	send := func() {
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send()
	send()
	src.Invalidate(src.current(t)) // the next Token call issues a new token
	send()
	if len(values) != 3 {
		t.Fatalf("got %d requests", len(values))
	}
	if unsafe.StringData(values[0][0]) != unsafe.StringData(values[1][0]) {
		t.Error("same token: the Authorization value was rebuilt instead of reused")
	}
	if &values[0][0] == &values[1][0] {
		t.Error("two requests share one Authorization slice (N2)")
	}
	if unsafe.StringData(values[1][0]) == unsafe.StringData(values[2][0]) || values[1][0] == values[2][0] {
		t.Error("new token: the old Authorization value was reused")
	}
	if want := "Bearer " + src.current(t).AccessToken; values[2][0] != want {
		t.Errorf("Authorization = %q, want the new token", values[2][0])
	}
}

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
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
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

func TestPrepareError(t *testing.T) {
	t.Parallel()
	boom := errors.New("signing key unavailable")
	base := &memBase{}
	tr := mustNew(t, newFakeSource(), func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
		tr.Prepare = func(*http.Request, *oauth2.Token) error { return boom }
	})
	req, body := bodyRequest(t, "POST", "https://api.example.com/", "x", true, new([]*readCloseCounter))
	resp, err := tr.RoundTrip(req)
	if !errors.Is(err, boom) || resp != nil {
		t.Fatalf("RoundTrip = %v, %v", resp, err)
	}
	if body.closes.Load() != 1 || len(base.requests()) != 0 {
		t.Errorf("closes = %d, requests = %d", body.closes.Load(), len(base.requests()))
	}
}

// The per-request hook (Prepare) runs only for requests that get the token.
// For an allowed origin its headers (a signature, a DPoP proof, and for a
// DPoP token the Authorization header) reach the base. For another origin,
// a Host header naming another site, and every redirect hop to another
// origin (another host, another port, https to http), the hook is not
// called and none of its headers, nor any Authorization, reach the base.
// The caller's request is never changed.
func TestPrepareOnlyForAllowedOrigins(t *testing.T) {
	t.Parallel()
	hookHeaders := []string{"X-Signed", "DPoP"}
	for _, typ := range []string{"Bearer", "DPoP"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{tokenType: typ}
			tok := src.current(t)
			wantAuth := "Bearer " + tok.AccessToken
			if typ == "DPoP" {
				wantAuth = "DPoP " + tok.AccessToken
			}
			var (
				mu       sync.Mutex
				prepared []string // URL and Host of each request the hook was called for
			)
			hooked := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return append([]string(nil), prepared...)
			}
			base := &memBase{answer: func(_ int, r *http.Request) (*http.Response, error) {
				if r.URL.Path == "/redirect" {
					code, _ := strconv.Atoi(r.URL.Query().Get("code"))
					h := http.Header{}
					h.Set("Location", r.URL.Query().Get("to"))
					return respond(r, code, h, ""), nil
				}
				return respond(r, http.StatusOK, nil, "landed"), nil
			}}
			tr := mustNew(t, src, func(tr *transport.Options) {
				tr.Base = base
				tr.Origins = []string{"https://api.example.com"}
				tr.PrepareTokenTypes = []string{"DPoP"}
				tr.Prepare = func(r *http.Request, tok *oauth2.Token) error {
					mu.Lock()
					prepared = append(prepared, r.URL.String()+" Host="+r.Host)
					mu.Unlock()
					if strings.EqualFold(tok.TokenType, "DPoP") {
						r.Header.Set("Authorization", "DPoP "+tok.AccessToken)
					}
					r.Header.Set("X-Signed", "yes")
					r.Header.Set("DPoP", "proof")
					return nil
				}
			})
			// newReq returns a request and a check that it was not changed.
			newReq := func(t *testing.T, url, host string) (*http.Request, func()) {
				t.Helper()
				req, err := http.NewRequest("GET", url, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = host
				req.Header.Set("Accept", "application/json")
				before, beforeURL := req.Header.Clone(), req.URL.String()
				return req, func() {
					t.Helper()
					if diff := cmp.Diff(before, req.Header); diff != "" {
						t.Errorf("caller's header changed (-before +after):\n%s", diff)
					}
					if req.URL.String() != beforeURL || req.Host != host {
						t.Errorf("caller's URL or Host changed: %s Host=%q", req.URL, req.Host)
					}
				}
			}
			// withHook and withoutHook check what the base got.
			withHook := func(t *testing.T, s seen) {
				t.Helper()
				if got := s.Header.Values("Authorization"); len(got) != 1 || got[0] != wantAuth {
					t.Errorf("%s: Authorization at the base = %q, want [%q]", s.URL, got, wantAuth)
				}
				if got := s.Header.Values("X-Signed"); len(got) != 1 || got[0] != "yes" {
					t.Errorf("%s: X-Signed at the base = %q, want [yes]", s.URL, got)
				}
				if got := s.Header.Values("DPoP"); len(got) != 1 || got[0] != "proof" {
					t.Errorf("%s: DPoP at the base = %q, want [proof]", s.URL, got)
				}
			}
			withoutHook := func(t *testing.T, s seen) {
				t.Helper()
				for _, k := range append([]string{"Authorization"}, hookHeaders...) {
					if got := s.Header.Values(k); len(got) != 0 {
						t.Errorf("%s: %s at the base = %q, want none", s.URL, k, got)
					}
				}
				if got := s.Header.Get("Accept"); got != "application/json" {
					t.Errorf("%s: the caller's Accept at the base = %q", s.URL, got)
				}
			}

			t.Run("direct", func(t *testing.T) {
				for _, tc := range []struct {
					url, host string
					allowed   bool
				}{
					{"https://api.example.com/a", "", true},
					{"https://other.example.com/a", "", false},
					{"https://api.example.com:8443/a", "", false},
					{"http://api.example.com/a", "", false},
					{"https://api.example.com/a", "other.example.com", false}, // Host header names another site
				} {
					n, h := len(base.requests()), len(hooked())
					req, unchanged := newReq(t, tc.url, tc.host)
					resp, err := tr.RoundTrip(req)
					if err != nil {
						t.Fatalf("%s Host=%q: %v", tc.url, tc.host, err)
					}
					resp.Body.Close()
					unchanged()
					got := base.requests()[n:]
					if len(got) != 1 {
						t.Fatalf("%s Host=%q: base got %d requests, want 1", tc.url, tc.host, len(got))
					}
					calls := hooked()[h:]
					if tc.allowed {
						withHook(t, got[0])
						if want := []string{tc.url + " Host="}; !cmp.Equal(calls, want) {
							t.Errorf("%s: hook called for %q, want %q", tc.url, calls, want)
						}
					} else {
						withoutHook(t, got[0])
						if len(calls) != 0 {
							t.Errorf("%s Host=%q: hook called for %q, want no call", tc.url, tc.host, calls)
						}
					}
				}
			})

			t.Run("redirect", func(t *testing.T) {
				client := &http.Client{Transport: tr}
				for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
					for _, to := range []string{"https://other.example.com/landing", "https://api.example.com:8443/landing", "http://api.example.com/landing"} {
						n, h := len(base.requests()), len(hooked())
						from := fmt.Sprintf("https://api.example.com/redirect?code=%d&to=%s", code, url.QueryEscape(to))
						req, unchanged := newReq(t, from, "")
						resp, err := client.Do(req)
						if err != nil {
							t.Fatalf("%d to %s: %v", code, to, err)
						}
						resp.Body.Close()
						unchanged()
						got := base.requests()[n:]
						if len(got) != 2 || got[0].URL != from || got[1].URL != to {
							t.Fatalf("%d to %s: base got %+v, want the two hops", code, to, got)
						}
						withHook(t, got[0])
						withoutHook(t, got[1])
						if calls, want := hooked()[h:], []string{from + " Host="}; !cmp.Equal(calls, want) {
							t.Errorf("%d to %s: hook called for %q, want only the first hop %q", code, to, calls, want)
						}
					}
				}
			})
		})
	}
}

func TestSourceError(t *testing.T) {
	t.Parallel()
	boom := errors.New("refresh: re-authentication required")
	src := newFakeSource()
	src.err = boom
	base := &memBase{}
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
	})
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	resp, err := tr.RoundTrip(req)
	if !errors.Is(err, boom) || resp != nil || !strings.HasPrefix(err.Error(), "transport:") {
		t.Fatalf("RoundTrip = %v, %v", resp, err)
	}
	if len(base.requests()) != 0 {
		t.Error("request sent without a token")
	}
}

// The request's context reaches the token source: a source blocked on a
// refresh returns when the request's context ends.
func TestSourceGetsRequestContext(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	src.block = make(chan struct{}) // never closed
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = &memBase{}
		tr.Origins = []string{"https://api.example.com"}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.example.com/", nil)
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRejectOtherOrigins(t *testing.T) {
	t.Parallel()
	base := &memBase{}
	tr := mustNew(t, newFakeSource(), func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
		tr.RejectOtherOrigins = true
	})
	req, body := bodyRequest(t, "POST", "https://other.example.com/p?access_token=secret", "x", false, nil)
	resp, err := tr.RoundTrip(req)
	if !errors.Is(err, transport.ErrOriginNotAllowed) || resp != nil {
		t.Fatalf("RoundTrip = %v, %v", resp, err)
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "other.example.com") {
		t.Errorf("error = %q", err)
	}
	if body.closes.Load() != 1 || len(base.requests()) != 0 {
		t.Errorf("closes = %d, requests = %d", body.closes.Load(), len(base.requests()))
	}
}

// Many goroutines, one transport, tokens changing underneath: -race must stay
// quiet and every request must carry the token current at some point.
func TestConcurrentRoundTrips(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	base := &memBase{}
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
	})
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			for j := range 20 {
				if j%7 == 0 && i%8 == 0 {
					src.Invalidate(src.current(t))
				}
				req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	valid := map[string]bool{}
	for _, s := range src.secrets() {
		valid["Bearer "+s] = true
	}
	for _, r := range base.requests() {
		if !valid[r.Auth] {
			t.Fatalf("request carried %q", r.Auth)
		}
	}
}
