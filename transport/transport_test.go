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

func TestPrepareError(t *testing.T) {
	t.Parallel()
	boom := errors.New("signing key unavailable")
	base := &memBase{}
	tr := mustNew(t, newFakeSource(), toAPI(base), func(tr *transport.Options) {
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
			tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) {
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
	tr := mustNew(t, src, toAPI(base))
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
	tr := mustNew(t, src, toAPI(&memBase{}))
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

// Many goroutines, one transport, tokens changing underneath: -race must stay
// quiet and every request must carry the token current at some point.
func TestConcurrentRoundTrips(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	base := &memBase{}
	tr := mustNew(t, src, toAPI(base))
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

// A Base that returns neither a response nor an error gets an error, not a
// panic (nor a nil response handed on); one that returns both has its
// response closed and only the error passed on.
func TestBaseBreakingTheContract(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		url  string
		both bool // return a response and an error
		code int  // status of the response, with both
	}{
		{name: "nil, nil", url: "https://api.example.com/"},
		{name: "nil, nil, other origin", url: "https://other.example.com/"},
		{name: "response and error", url: "https://api.example.com/", both: true, code: 200},
		{name: "401 and error", url: "https://api.example.com/", both: true, code: 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var respBody *trackedBody
			boom := errors.New("base failed")
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if !tt.both {
					return nil, nil // does not close the body either
				}
				r.Body.Close()
				respBody = &trackedBody{Reader: strings.NewReader("")}
				resp := respond(r, tt.code, invalidTokenHeader(), "")
				resp.Body = respBody
				return resp, boom
			})
			tr := mustNew(t, newFakeSource(), toAPI(base))
			req, body := bodyRequest(t, "POST", tt.url, "payload", true, new([]*readCloseCounter))
			var resp *http.Response
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("RoundTrip panicked: %v", p)
					}
				}()
				resp, err = tr.RoundTrip(req)
			}()
			if err == nil || resp != nil {
				t.Fatalf("RoundTrip = %v, %v; want only an error", resp, err)
			}
			if tt.both && (!errors.Is(err, boom) || !respBody.closed.Load()) {
				t.Errorf("err = %v, response closed %v", err, respBody.closed.Load())
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("body closed %d times, want 1", n)
			}
		})
	}
}
