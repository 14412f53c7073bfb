package transport_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/transport"
)

// targetCase changes a request to https://api.example.com/v1 (the allowed
// origin) in one way that may make the request line or a Host header name
// another host than the one the connection goes to.
type targetCase struct {
	name      string
	edit      func(r *http.Request)
	wantToken bool
}

func withOpaque(s string) func(*http.Request) { return func(r *http.Request) { r.URL.Opaque = s } }
func withPath(p, raw string) func(*http.Request) {
	return func(r *http.Request) { r.URL.Path, r.URL.RawPath = p, raw }
}
func withMethod(m string) func(*http.Request) { return func(r *http.Request) { r.Method = m } }
func withHeader(k, v string) func(*http.Request) {
	return func(r *http.Request) { r.Header[k] = []string{v} }
}

func targetCases() []targetCase {
	return []targetCase{
		// Still the allowed origin: the token goes.
		{"plain", func(*http.Request) {}, true},
		{"opaque origin-form", withOpaque("/v1/a%2Fb"), true},
		{"opaque absolute, same host", withOpaque("//api.example.com/v1"), true},
		{"opaque absolute, same host other case, default port", withOpaque("//API.example.com:443/v1"), true},
		{"opaque absolute with scheme, same origin", withOpaque("https://api.example.com/v1"), true},
		{"opaque absolute, no path, no query", withOpaque("//api.example.com"), true},
		{"empty path", withPath("", ""), true},
		{"double slash inside the path", withPath("/a//b", ""), true},
		{"space in the path, escaped when written", withPath("/a b", ""), true},
		{"raw path in use", withPath("/a/b", "/a%2Fb"), true},
		{"empty method means GET", withMethod(""), true},
		{"PATCH", withMethod("PATCH"), true},
		{"header host naming the same host", withHeader("host", "api.example.com"), true},
		{"header Host naming the same origin", withHeader("Host", "API.example.com:443"), true},

		// The request line names another host.
		{"opaque //host, written as https://evil.example/x", withOpaque("//evil.example/x"), false},
		{"opaque //host without a path", withOpaque("//evil.example"), false},
		{"opaque with a scheme", withOpaque("https://evil.example/x"), false},
		{"opaque with another scheme", withOpaque("http://api.example.com/x"), false},
		{"opaque with user info before another host", withOpaque("//api.example.com@evil.example/x"), false},
		{"opaque with user info", withOpaque("//user@api.example.com/x"), false},
		{"opaque with another port", withOpaque("//api.example.com:8443/x"), false},
		{"opaque with a backslash before another host", withOpaque(`//api.example.com\@evil.example/x`), false},
		{"opaque with a fragment before another host", withOpaque("//api.example.com#@evil.example/x"), false},
		{"opaque with a query right after the host", func(r *http.Request) {
			r.URL.Opaque, r.URL.RawQuery = "//api.example.com", "x=@evil.example"
		}, false},
		{"opaque with an empty host", withOpaque("///evil.example/x"), false},
		{"opaque that is no path", withOpaque("evil.example/x"), false},
		{"opaque starting with a backslash", withOpaque(`/\evil.example/x`), false},
		{"opaque with a space", withOpaque("/x http://evil.example/"), false},
		{"opaque asterisk", withOpaque("*"), false},
		{"path without a slash", withPath("evil.example/x", ""), false},
		{"path starting with @", withPath("@evil.example/x", ""), false},
		{"path starting with //", withPath("//evil.example/x", ""), false},
		{"path asterisk", withPath("*", ""), false},
		{"raw path without a slash", withPath("/x", "%2Fx"), false},
		{"query with a space", func(r *http.Request) { r.URL.RawQuery = "q=1 http://evil.example/" }, false},
		{"query with a byte some parsers split on", func(r *http.Request) { r.URL.RawQuery = "q=\x85" }, false},
		{"CONNECT", func(r *http.Request) { r.Method, r.URL.Path = "CONNECT", "" }, false},
		{"CONNECT to another host", func(r *http.Request) { r.Method, r.URL.Path, r.URL.Opaque = "CONNECT", "", "evil.example:443" }, false},
		{"connect in lower case", withMethod("connect"), false},
		{"method with a target in it", withMethod("GET http://evil.example/"), false},

		// Brackets belong around IPv6 addresses only; net/url's Hostname
		// drops them, but "[api.example.com]" is no site a front end knows.
		{"URL host in brackets", func(r *http.Request) { r.URL.Host = "[api.example.com]" }, false},
		{"Host in brackets", func(r *http.Request) { r.Host = "[api.example.com]:443" }, false},
		{"opaque with the host in brackets", withOpaque("//[api.example.com]/x"), false},

		// A Host key in the header map names another host.
		{"header host, written as a second Host header", withHeader("host", "evil.example"), false},
		{"header HOST empty", withHeader("HOST", ""), false},
		{"header Host, which net/http skips", withHeader("Host", "evil.example"), false},
	}
}

// A request whose request line or Host header names another host than the
// connection, or leaves it ambiguous, goes out without the token (or fails
// with ErrOriginNotAllowed), because a front end routing on either would
// hand the token to that host.
func TestRequestTargetIsPartOfTheOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range targetCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, reject := range []bool{false, true} {
				src := newFakeSource()
				base := &memBase{}
				tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) { tr.RejectOtherOrigins = reject })
				req, body := bodyRequest(t, "POST", "https://api.example.com/v1", "x", false, nil)
				tt.edit(req)
				before := fmt.Sprint(req.URL, req.Host, req.Header)
				resp, err := tr.RoundTrip(req)
				if n := body.closes.Load(); n != 1 {
					t.Errorf("reject=%v: body closed %d times, want 1", reject, n)
				}
				if after := fmt.Sprint(req.URL, req.Host, req.Header); after != before {
					t.Errorf("reject=%v: request changed: %s -> %s", reject, before, after)
				}
				if reject && !tt.wantToken {
					if !errors.Is(err, transport.ErrOriginNotAllowed) || resp != nil {
						t.Errorf("reject: RoundTrip = %v, %v; want ErrOriginNotAllowed", resp, err)
					}
					if len(base.requests()) != 0 {
						t.Error("reject: request sent")
					}
					if err != nil && strings.Contains(err.Error(), "evil") {
						t.Errorf("reject: error %q shows the request target", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("reject=%v: %v", reject, err)
				}
				resp.Body.Close()
				got := base.requests()[0]
				if tt.wantToken && got.Auth != "Bearer "+src.current(t).AccessToken {
					t.Errorf("reject=%v: the request did not carry the token", reject)
				}
				if !tt.wantToken {
					if leaked := canary.Find(fmt.Sprint(got.Header), src.secrets()...); len(leaked) > 0 {
						t.Errorf("reject=%v: the token went out with a request line or Host header naming another host", reject)
					}
				}
			}
		})
	}
}

// The same end to end: a TLS front end that routes on the request line (as
// net/http's server does: it takes the host of an absolute-form target as
// the request's Host) sees evil.example and no token, while a request
// whose absolute-form target names the front end itself carries the token.
func TestRequestTargetOverTheWire(t *testing.T) {
	t.Parallel()
	type seenReq struct{ target, host, auth string }
	var mu sync.Mutex
	var got []seenReq
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seenReq{r.RequestURI, r.Host, r.Header.Get("Authorization")})
		mu.Unlock()
	}))
	defer srv.Close()
	src := newFakeSource()
	tr := mustNew(t, src, toServer(srv))
	client := &http.Client{Transport: tr}
	self := strings.TrimPrefix(srv.URL, "https:")
	for _, op := range []string{"//evil.example/x", self + "/x"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.URL.Opaque = op
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("front end saw %d requests, want 2", len(got))
	}
	if got[0].host != "evil.example" || got[0].auth != "" {
		t.Errorf("front end routed %q to %q with an Authorization header (%d bytes), want none", got[0].target, got[0].host, len(got[0].auth))
	}
	if want := "Bearer " + src.current(t).AccessToken; got[1].auth != want {
		t.Errorf("request for %q itself did not carry the token", got[1].target)
	}
}

// Through an HTTP proxy net/http writes scheme://host in front of the path
// itself. A path that does not start with "/" is then glued to the host:
// "@evil.example/x" turns the allowed host into user info in front of
// evil.example, where the proxy sends the request.
func TestRequestTargetThroughProxy(t *testing.T) {
	t.Parallel()
	type seenReq struct{ target, host, auth string }
	var mu sync.Mutex
	var got []seenReq
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seenReq{r.RequestURI, r.URL.Host, r.Header.Get("Authorization")})
		mu.Unlock()
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	src := newFakeSource()
	base := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer base.CloseIdleConnections()
	tr := mustNew(t, src, func(tr *transport.Options) {
		// Port 9 (discard) is never dialled: every request goes to the proxy.
		tr.Origins = []string{"http://localhost:9"}
		tr.AllowInsecureLoopback = true
		tr.Base = base
	})
	for _, p := range []string{"@evil.example/x", "/x"} {
		req, _ := http.NewRequest("GET", "http://localhost:9/", nil)
		req.URL.Path = p
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("proxy saw %d requests, want 2", len(got))
	}
	if got[0].host != "evil.example" || got[0].auth != "" {
		t.Errorf("proxy routed %q to %q with an Authorization header (%d bytes), want none", got[0].target, got[0].host, len(got[0].auth))
	}
	if want := "Bearer " + src.current(t).AccessToken; got[1].host != "localhost:9" || got[1].auth != want {
		t.Errorf("proxy routed %q to %q; token carried: %v, want true", got[1].target, got[1].host, got[1].auth == want)
	}
}

// Deciding the origin costs no allocation: a request refused the token is
// handed to the base as it is, with nothing allocated, and one that gets
// the token allocates no more than a plain request, whatever its form. (A
// Host key in the header map is checked while the header is copied for the
// token, so a request refused for one allocates that copy, and no more.)
func TestOriginCheckDoesNotAllocate(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	src := &atomicSource{}
	tr := mustNew(t, src, toAPI(base))
	src.p.Store(&oauth2.Token{AccessToken: canary.JWT("at", 0), TokenType: "Bearer"})
	allocs := func(edit func(*http.Request)) (n float64, hostKey bool) {
		req, _ := http.NewRequest("GET", "https://api.example.com/v1?page=2", nil)
		req.Header.Set("Accept", "application/json")
		edit(req)
		for k := range req.Header {
			hostKey = hostKey || strings.EqualFold(k, "Host")
		}
		return testing.AllocsPerRun(100, func() {
			if r, err := tr.RoundTrip(req); err != nil || r != resp {
				t.Fatalf("RoundTrip = %v, %v", r, err)
			}
		}), hostKey
	}
	plain, _ := allocs(func(*http.Request) {})
	if plain == 0 {
		t.Fatal("a request with the token allocated nothing; the test cannot tell")
	}
	for _, tt := range targetCases() {
		n, hostKey := allocs(tt.edit)
		switch {
		case (tt.wantToken || hostKey) && n > plain:
			t.Errorf("%s: %v allocations, want at most %v as for a plain request", tt.name, n, plain)
		case !tt.wantToken && !hostKey && n != 0:
			t.Errorf("%s: %v allocations, want 0", tt.name, n)
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

func TestRejectOtherOrigins(t *testing.T) {
	t.Parallel()
	base := &memBase{}
	tr := mustNew(t, newFakeSource(), toAPI(base), func(tr *transport.Options) { tr.RejectOtherOrigins = true })
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

// req.Host is where a virtual-hosting front end routes the request: a Host
// that names another host (or port) than the allowed URL.Host is another
// origin, and gets no token (or ErrOriginNotAllowed with
// RejectOtherOrigins). Case and default ports do not count.
func TestHostHeaderIsPartOfTheOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host      string
		wantToken bool
	}{
		{"", true},
		{"api.example.com", true},
		{"API.Example.COM", true},
		{"api.example.com:443", true},
		{"tenant-b.other-company.example", false},
		{"api.example.com:8443", false},
		{"api.example.com.evil.example", false},
		{"api.example.com:80", false},
		{":443", false},
	}
	for _, tt := range tests {
		t.Run("host="+tt.host, func(t *testing.T) {
			t.Parallel()
			for _, reject := range []bool{false, true} {
				src := newFakeSource()
				base := &memBase{}
				tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) { tr.RejectOtherOrigins = reject })
				req, body := bodyRequest(t, "POST", "https://api.example.com/v1", "x", false, nil)
				req.Host = tt.host
				resp, err := tr.RoundTrip(req)
				if body.closes.Load() != 1 {
					t.Errorf("reject=%v: body closed %d times", reject, body.closes.Load())
				}
				if reject && !tt.wantToken {
					if !errors.Is(err, transport.ErrOriginNotAllowed) || resp != nil {
						t.Errorf("reject: RoundTrip = %v, %v; want ErrOriginNotAllowed", resp, err)
					}
					if len(base.requests()) != 0 {
						t.Error("reject: request sent")
					}
					continue
				}
				if err != nil {
					t.Fatalf("reject=%v: %v", reject, err)
				}
				resp.Body.Close()
				got := base.requests()[0].Auth
				if tt.wantToken && got != "Bearer "+src.current(t).AccessToken {
					t.Errorf("reject=%v: Authorization = %q, want the token", reject, got)
				}
				if !tt.wantToken && got != "" {
					t.Errorf("reject=%v: the token went to Host %q", reject, tt.host)
				}
			}
		})
	}
}

// The same end to end: a TLS front end that routes on Host sees the other
// tenant's Host and no token.
func TestHostHeaderOverrideOverTheWire(t *testing.T) {
	t.Parallel()
	var gotHost, gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotAuth = r.Host, r.Header.Get("Authorization")
	}))
	defer srv.Close()
	tr := mustNew(t, newFakeSource(), toServer(srv))
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Host = "tenant-b.other-company.example"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotHost != req.Host || gotAuth != "" {
		t.Errorf("front end saw Host %q with Authorization %q, want no token", gotHost, gotAuth)
	}
}
