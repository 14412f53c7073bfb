package transport_test

import (
	"context"
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
				tr := mustNew(t, src, func(tr *transport.Options) {
					tr.Base = base
					tr.Origins = []string{"https://api.example.com"}
					tr.RejectOtherOrigins = reject
				})
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
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Origins = []string{srv.URL}
		tr.Base = srv.Client().Transport
	})
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
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
	})
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

// fuzzOrigin is an origin FuzzOriginCheck allows, with its scheme, host
// (lower case) and port spelled out for the wire checks.
type fuzzOrigin struct{ url, scheme, host, port string }

// fuzzOrigins are the origins FuzzOriginCheck allows.
var fuzzOrigins = []fuzzOrigin{
	{"https://api.example.com", "https", "api.example.com", "443"},
	{"https://files.example.com:8443", "https", "files.example.com", "8443"},
	{"http://127.0.0.1:8080", "http", "127.0.0.1", "8080"},
}

// FuzzOriginCheck builds requests from arbitrary URL fields, Host and Host
// header keys, lets the transport decide, and writes what it hands to the
// base with (*http.Request).Write and WriteProxy, as net/http's transport
// does. Whenever the token goes, the written request must name one allowed
// origin and nothing else: the connection (URL.Host), the single Host header
// and the request line, whose target is either a plain path or an absolute
// URL that a strict parser (url.Parse) and a naive one (authority up to the
// first "/") read alike. With RejectOtherOrigins the same request fails with
// ErrOriginNotAllowed exactly when it would otherwise go without the token.
func FuzzOriginCheck(f *testing.F) {
	seeds := []struct {
		method, scheme, host, opaque, path, rawPath, rawQuery, reqHost, hdrKey, hdrVal string
		force                                                                          bool
	}{
		{method: "GET", scheme: "https", host: "api.example.com", path: "/v1"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "//evil.example/x"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "//api.example.com/x", rawQuery: "a=1"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "https://api.example.com:443/x"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "//api.example.com", rawQuery: "@evil.example"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "//api.example.com@evil.example/"},
		{method: "GET", scheme: "http", host: "127.0.0.1:8080", path: "@evil.example/x"},
		{method: "GET", scheme: "http", host: "127.0.0.1:8080", path: "evil.example/x"},
		{method: "GET", scheme: "https", host: "api.example.com", path: "//evil.example/x"},
		{method: "GET", scheme: "https", host: "api.example.com", path: "/x", rawPath: "%2Fx"},
		{method: "OPTIONS", scheme: "https", host: "api.example.com", path: "*"},
		{method: "CONNECT", scheme: "https", host: "api.example.com", opaque: "evil.example:443"},
		{method: "GET", scheme: "https", host: "files.example.com:8443", reqHost: "FILES.example.com:8443", path: "/"},
		{method: "GET", scheme: "https", host: "api.example.com", path: "/", hdrKey: "host", hdrVal: "evil.example"},
		{method: "GET", scheme: "https", host: "api.example.com", path: "/", rawQuery: "q=1 http://evil.example/"},
		{method: "GET", scheme: "https", host: "api.example.com", path: "/", force: true},
		{method: "GET", scheme: "HTTPS", host: "API.EXAMPLE.COM:443", opaque: "//api.example.com"},
		{method: "GET", scheme: "https", host: "[api.example.com]", path: "/"},
		{method: "GET", scheme: "https", host: "api.example.com", reqHost: "[api.example.com]:443", path: "/"},
		{method: "GET", scheme: "https", host: "api.example.com", opaque: "//[api.example.com]/"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.scheme, s.host, s.opaque, s.path, s.rawPath, s.rawQuery, s.reqHost, s.hdrKey, s.hdrVal, s.force)
	}
	secret := canary.JWT("at", 0)
	tok := &oauth2.Token{AccessToken: secret, TokenType: "Bearer"}
	src := transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil })
	var origins []string
	for _, o := range fuzzOrigins {
		origins = append(origins, o.url)
	}
	// Built once: the fuzz function runs one input at a time in each
	// process, and the cheaper it is, the less time goes into minimizing.
	var out *http.Request // what the base got last
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		out = r
		return respond(r, http.StatusOK, nil, ""), nil
	})
	var trs [2]*transport.Transport
	for i, reject := range []bool{false, true} {
		trs[i] = mustNew(f, src, func(tr *transport.Options) {
			tr.Base = base
			tr.Origins = origins
			tr.AllowInsecureLoopback = true
			tr.RejectOtherOrigins = reject
		})
	}
	f.Fuzz(func(t *testing.T, method, scheme, host, opaque, path, rawPath, rawQuery, reqHost, hdrKey, hdrVal string, force bool) {
		for _, s := range []string{method, scheme, host, opaque, path, rawPath, rawQuery, reqHost, hdrKey, hdrVal} {
			if len(s) > 100 {
				// Length adds nothing to what is checked here, and long
				// inputs take the fuzzer most of its time to minimize.
				return
			}
		}
		roundTrip := func(reject bool) error {
			u := &url.URL{Scheme: scheme, Host: host, Opaque: opaque, Path: path, RawPath: rawPath, RawQuery: rawQuery, ForceQuery: force}
			req := &http.Request{Method: method, URL: u, Host: reqHost, Header: http.Header{}}
			if hdrKey != "" {
				req.Header[hdrKey] = []string{hdrVal}
			}
			out = nil
			tr := trs[0]
			if reject {
				tr = trs[1]
			}
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			return err
		}
		if err := roundTrip(false); err != nil || out == nil {
			t.Fatalf("RoundTrip = %v, sent %v; want it sent", err, out != nil)
		}
		withToken := out.Header.Get("Authorization") == "Bearer "+secret
		if !withToken && len(canary.Find(fmt.Sprint(out.Header), secret)) > 0 {
			t.Fatal("the token went out in another header than Authorization")
		}
		sent := out
		if err := roundTrip(true); withToken != (err == nil) || !withToken != errors.Is(err, transport.ErrOriginNotAllowed) {
			t.Fatalf("with RejectOtherOrigins: %v; without: token sent %v", err, withToken)
		}
		if !withToken {
			return
		}
		for _, proxy := range []bool{false, true} {
			var buf strings.Builder
			write := sent.Write
			if proxy {
				write = sent.WriteProxy
			}
			if err := write(&buf); err != nil {
				continue // net/http would send nothing
			}
			if msg := wireNamesOneOrigin(buf.String(), sent.URL); msg != "" {
				t.Fatalf("token sent, proxy=%v: %s\nrequest as written:\n%s", proxy, msg, strings.ReplaceAll(buf.String(), secret, "TOKEN"))
			}
		}
	})
}

// wireNamesOneOrigin checks a request as net/http writes it (wire) for the
// URL u it was sent to, and returns what is wrong, or "" when the
// connection, the Host header and the request line all name one origin of
// fuzzOrigins. It parses on its own rather than with the transport's code.
func wireNamesOneOrigin(wire string, u *url.URL) string {
	head, _, ok := strings.Cut(wire, "\r\n\r\n")
	if !ok {
		return "no end of header"
	}
	lines := strings.Split(head, "\r\n")
	for i := 0; i < len(lines[0]); i++ {
		if c := lines[0][i]; c < ' ' || c > '~' {
			return fmt.Sprintf("request line has byte %#x", c)
		}
	}
	parts := strings.Split(lines[0], " ")
	if len(parts) != 3 || parts[2] != "HTTP/1.1" {
		return fmt.Sprintf("request line %q is not method, target and version", lines[0])
	}
	if strings.EqualFold(parts[0], "CONNECT") {
		return "CONNECT"
	}
	var o *fuzzOrigin
	for i := range fuzzOrigins {
		if strings.EqualFold(u.Scheme, fuzzOrigins[i].scheme) && isOrigin(u.Host, &fuzzOrigins[i]) {
			o = &fuzzOrigins[i]
		}
	}
	if o == nil {
		return fmt.Sprintf("connection to %s://%s, not an allowed origin", u.Scheme, u.Host)
	}
	var hosts []string
	for _, l := range lines[1:] {
		if k, v, _ := strings.Cut(l, ":"); strings.EqualFold(strings.TrimSpace(k), "host") {
			hosts = append(hosts, strings.TrimSpace(v))
		}
	}
	if len(hosts) != 1 || !isOrigin(hosts[0], o) {
		return fmt.Sprintf("Host headers %q, want one naming %s", hosts, o.url)
	}
	target := parts[1]
	if strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "//") && !strings.HasPrefix(target, "/\\") {
		return ""
	}
	// Parsers end the authority at "/" (all), "?" and "#" (RFC 3986) or "\\"
	// too (WHATWG), and take what precedes an "@" for user info: the
	// authority up to "/" must hold none of those, so all read it alike.
	scheme, rest, ok := strings.Cut(target, "://")
	authority, _, _ := strings.Cut(rest, "/")
	if !ok || strings.ContainsAny(authority, "?#\\@") || !strings.EqualFold(scheme, o.scheme) || !isOrigin(authority, o) {
		return fmt.Sprintf("request target %q does not plainly name %s", target, o.url)
	}
	// url.Parse fails on a bad escape in the path, which leaves the host
	// alone; when it succeeds it must find the same host.
	if strict, err := url.Parse(target); err == nil && (strict.User != nil || strict.Host != authority) {
		return fmt.Sprintf("request target %q: url.Parse reads host %q", target, strict.Host)
	}
	return ""
}

// isOrigin reports whether hostport (host[:port], as on the wire) names o:
// the host in ASCII, case aside, and the port, o's default when absent.
func isOrigin(hostport string, o *fuzzOrigin) bool {
	h, p := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		h, p = hostport[:i], hostport[i+1:]
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && strings.Contains(h, ":") {
		h = h[1 : len(h)-1] // only an IPv6 address goes in brackets
	}
	if p == "" {
		p = map[string]string{"https": "443", "http": "80"}[o.scheme]
	}
	if p != o.port || len(h) != len(o.host) {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != o.host[i] {
			return false
		}
	}
	return true
}
