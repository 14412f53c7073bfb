package transport

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokenward/tokenward/internal/redact"
)

// origin is a normalised allowlist entry.
type origin struct {
	scheme string // "https" or "http", lower case
	host   string // lower case, without brackets
	port   string // decimal, never empty
	// exact holds the forms url.URL.Host takes for this origin when written
	// in lower case ("api.example.com", "api.example.com:443"; brackets kept
	// for IPv6), for a fast path that needs no parsing. exact[1] may be "".
	exact [2]string
	// name is the origin as the source hears of it ([Feedback]):
	// scheme://host:port, lower case, the port always written.
	name string
}

func parseOrigin(s string, allowLoopback bool) (origin, error) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return origin{}, fmt.Errorf("transport: %w: origin %q is not scheme://host[:port]", ErrInvalidConfig, redact.URLString(s))
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return origin{}, fmt.Errorf("transport: %w: origin %q must not have user info, a path, a query or a fragment", ErrInvalidConfig, redact.URL(u))
	}
	o := origin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if o.host == "" {
		return origin{}, fmt.Errorf("transport: %w: origin %q has no host", ErrInvalidConfig, redact.URL(u))
	}
	if o.port == "" {
		o.port = defaultPort(o.scheme)
	} else if n, err := strconv.Atoi(o.port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != o.port {
		return origin{}, fmt.Errorf("transport: %w: origin %q has an invalid port", ErrInvalidConfig, redact.URL(u))
	}
	h := o.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	o.exact[0] = h + ":" + o.port
	o.name = o.scheme + "://" + o.exact[0]
	if o.port == defaultPort(o.scheme) {
		o.exact[1] = h
	}
	switch o.scheme {
	case "https":
	case "http":
		if !allowLoopback || !isLoopback(o.host) {
			return origin{}, fmt.Errorf("transport: origin %q: %w", redact.URL(u), ErrInsecureURL)
		}
	default:
		return origin{}, fmt.Errorf("transport: origin %q: scheme must be https: %w", redact.URL(u), ErrInsecureURL)
	}
	return o, nil
}

func defaultPort(scheme string) string {
	switch {
	case asciiEqualFold(scheme, "https"):
		return "443"
	case asciiEqualFold(scheme, "http"):
		return "80"
	}
	return ""
}

// isLoopback reports whether host (lower case, no brackets) is a loopback
// name or address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// refusal says why a request does not get the token; the zero value means
// that it does.
type refusal uint8

const (
	permitted   refusal = iota
	otherOrigin         // req.URL's scheme, host or port is not allowed
	otherHost           // req.Host names another host or port than req.URL
	otherTarget         // the request line does not plainly name req.URL's origin
	otherField          // a Host key in req.Header names another host
)

// check decides whether req may get the token. The token goes out only
// when everything that a server, proxy or load balancer may route on names
// the same allowed origin as the connection net/http opens for req.URL: the
// URL itself, the Host header and the request line. Host keys in req.Header
// are checked apart, by copyRequest (see hostValuesAgree). It does not
// allocate: it runs on every request.
func (c *config) check(req *http.Request) (refusal, *origin) {
	o := c.allowed(req.URL)
	switch {
	case o == nil:
		return otherOrigin, nil
	case !sameHost(req):
		return otherHost, nil
	case !ownTarget(req):
		return otherTarget, nil
	}
	return permitted, o
}

// allowed returns the entry of the allowlist that u's origin matches, or
// nil.
func (c *config) allowed(u *url.URL) *origin {
	// Fast path: the usual lower-case URL matches one form exactly.
	for i := range c.origins {
		o := &c.origins[i]
		if u.Scheme == o.scheme && (u.Host == o.exact[0] || (u.Host == o.exact[1] && o.exact[1] != "")) {
			return o
		}
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	// Hostname drops brackets, but only an IPv6 address may have them: a
	// Host header "[api.example.com]" names no known site, and a front end
	// may route it to its default one.
	bracketed := strings.HasPrefix(u.Host, "[")
	for i := range c.origins {
		o := &c.origins[i]
		if o.port == port && asciiEqualFold(o.scheme, u.Scheme) && asciiEqualFold(o.host, host) &&
			bracketed == strings.Contains(o.host, ":") {
			return o
		}
	}
	return nil
}

// sameHost reports whether req.Host, the Host header net/http sends, names
// the same host and port as req.URL.Host. An empty req.Host means URL.Host.
// A front end that routes on the Host header would otherwise get the token
// of URL.Host's origin for a request meant for another site.
func sameHost(req *http.Request) bool {
	return req.Host == "" || sameHostPort(req.Host, req.URL.Host, req.URL.Scheme)
}

// sameHostPort reports whether a and b, each host[:port] as in url.URL.Host,
// name the same host and port under scheme: host names compared in ASCII
// without regard to case, default ports normalised, brackets (for IPv6)
// on both or neither. Non-ASCII letters never match ASCII ones, since
// net/http converts such names to punycode before they go out. It does not
// allocate.
func sameHostPort(a, b, scheme string) bool {
	if a == b {
		return a != ""
	}
	if strings.HasPrefix(a, "[") != strings.HasPrefix(b, "[") {
		return false
	}
	ua, ub := url.URL{Host: a}, url.URL{Host: b}
	pa, pb := ua.Port(), ub.Port()
	if pa == "" {
		pa = defaultPort(scheme)
	}
	if pb == "" {
		pb = defaultPort(scheme)
	}
	return pa == pb && ua.Hostname() != "" && asciiEqualFold(ua.Hostname(), ub.Hostname())
}

// ownTarget reports whether the request line that net/http writes for req
// can only be read as a request for req.URL's own origin. That line is the
// method and req.URL.RequestURI(): the path and query in origin form
// ("/path?query"), or URL.Opaque as it is, with the URL's scheme put in
// front when Opaque starts with "//"; through an HTTP proxy, scheme://host
// goes in front of the path. A load balancer or proxy that routes on the
// request line, and many do, sends the request to the host written there,
// whatever host the connection was opened to. So the token goes only with
//
//   - a method that is a plain token other than CONNECT (a CONNECT request
//     names a tunnel target, not a resource of the origin);
//   - a path that starts with exactly one "/" (a path such as "@evil.example"
//     or "evil.example/x" is glued to the host by a proxy, "//evil.example/x"
//     reads as a host to some parsers, and "*" names no resource), checked on
//     both Path and RawPath since either may be written;
//   - or an Opaque that is such a path, or that is "//host[:port]/..." or
//     "scheme://host[:port]/..." with exactly req.URL's scheme, host and port
//     (no user info, and a "/" after the port unless nothing follows, not
//     even a query);
//   - and a query and Opaque of visible ASCII only, since a space or another
//     byte that some parsers take for a space splits the request line into
//     more parts than three, and which of them is the target is then a guess.
//
// It does not allocate.
func ownTarget(req *http.Request) bool {
	if m := req.Method; m != "" && (!isTokenString(m) || asciiEqualFold(m, http.MethodConnect)) {
		return false
	}
	u := req.URL
	if !validTokenChars(u.RawQuery) {
		return false
	}
	if u.Opaque == "" {
		return (u.Path == "" || originForm(u.Path)) && (u.RawPath == "" || originForm(u.RawPath))
	}
	s := u.Opaque
	if !validTokenChars(s) {
		return false
	}
	if originForm(s) {
		return true
	}
	if !strings.HasPrefix(s, "//") {
		scheme, rest, ok := strings.Cut(s, ":")
		if !ok || !asciiEqualFold(scheme, u.Scheme) || !strings.HasPrefix(rest, "//") {
			return false
		}
		s = rest
	}
	authority, _, slash := strings.Cut(s[2:], "/")
	if !slash && (u.RawQuery != "" || u.ForceQuery) {
		// "?query" would follow the port directly; a parser that ends the
		// authority only at "/" reads "host?x@evil.example" as evil.example.
		return false
	}
	return sameHostPort(authority, u.Host, u.Scheme)
}

// originForm reports whether s starts with exactly one slash: "/" followed
// by anything but another "/" or "\" (which some parsers read as a slash).
func originForm(s string) bool {
	return len(s) > 0 && s[0] == '/' && (len(s) == 1 || (s[1] != '/' && s[1] != '\\'))
}

// hostValuesAgree reports whether the values vs of a Host key in
// req.Header (under any case of its letters) all name the same host and
// port as req.URL. net/http skips the key "Host" but writes a key such as
// "host" as it is, as a second Host header next to its own, and front ends
// differ on which one they route on; other RoundTrippers may use either.
// It does not allocate.
func hostValuesAgree(vs []string, req *http.Request) bool {
	for _, v := range vs {
		if !sameHostPort(v, req.URL.Host, req.URL.Scheme) {
			return false
		}
	}
	return true
}

// asciiEqualFold is strings.EqualFold for ASCII only: a non-ASCII byte
// matches only itself. Host names go out in ASCII (net/http converts others
// to punycode), so Unicode case folding, under which the Kelvin sign equals
// "k", has no place in comparing them.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isTokenString reports whether s is a non-empty RFC 9110 token, the form
// of a method.
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return s != ""
}

// roundTripOther handles a request that does not get the token, for the
// reason why.
func (c *config) roundTripOther(req *http.Request, why refusal) (*http.Response, error) {
	ctx := req.Context()
	if !c.reject && !c.log.Enabled(ctx, slog.LevelDebug) {
		return c.send(req)
	}
	attrs := []slog.Attr{slog.String("method", req.Method), slog.Any("url", redact.URLValue{U: req.URL})}
	detail := ""
	switch why {
	case otherHost:
		host := redact.Truncate(req.Host, 256)
		attrs = append(attrs, slog.String("host", host))
		detail = fmt.Sprintf(" with Host header %q", host)
	case otherTarget:
		// The target itself is not shown: it may carry a query.
		attrs = append(attrs, slog.String("reason", "request target"))
		detail = " with a request target that does not plainly name it"
	case otherField:
		attrs = append(attrs, slog.String("reason", "Host key in the header map"))
		detail = " with a Host key in the header map that names another host"
	}
	if !c.reject {
		c.log.LogAttrs(ctx, slog.LevelDebug, "transport: origin not allowed; sending without token", attrs...)
		return c.send(req)
	}
	closeBody(req)
	c.log.LogAttrs(ctx, slog.LevelWarn, "transport: origin not allowed; request refused", attrs...)
	o := redact.URL(&url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host})
	return nil, local(fmt.Errorf("%w: %s%s", ErrOriginNotAllowed, o, detail))
}
