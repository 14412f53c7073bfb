package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/transport"
)

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
