package dpop

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalidURL means a request URL cannot be named in a proof: it does
// not parse, is not http or https, has no host, an opaque part, or a host
// that is not ASCII.
var ErrInvalidURL = errors.New("invalid request URL for a DPoP proof")

// HTU returns the htu claim for a request to rawURL: scheme://host[:port]
// and path, normalised as the package documentation describes (lower-case
// scheme and host, no default or empty port, no user information, "/" for
// an empty path, no query or fragment). Errors match ErrInvalidURL.
func HTU(rawURL string) (string, error) {
	if htu, ok := fastHTU(rawURL); ok {
		return htu, nil
	}
	htu, _, err := slowHTU(rawURL)
	if err != nil {
		return "", fmt.Errorf("dpop: htu: %w", err)
	}
	return htu, nil
}

// Origin returns the origin of rawURL that NonceCache is keyed by: the
// ASCII serialisation of RFC 6454 section 6.2, scheme://host[:port] with
// the port only when it is not the scheme's default. Errors match
// ErrInvalidURL.
func Origin(rawURL string) (string, error) {
	htu, err := HTU(rawURL)
	if err != nil {
		return "", fmt.Errorf("dpop: origin: %w", errors.Unwrap(err))
	}
	return originOf(htu), nil
}

// target is an htu in parts whose concatenation scheme + "://" + host +
// path is the htu; whole, when set, is the htu in one piece instead.
type target struct {
	whole, scheme, host, path string
}

// String returns the htu.
func (t target) String() string {
	if t.whole != "" {
		return t.whole
	}
	return t.scheme + "://" + t.host + t.path
}

// appendTo appends the htu to b as the contents of a JSON string.
func (t target) appendTo(b []byte) []byte {
	if t.whole != "" {
		return appendJSONString(b, t.whole)
	}
	// fastTarget accepted only characters that need no escaping.
	b = append(b, t.scheme...)
	b = append(b, "://"...)
	b = append(b, t.host...)
	return append(b, t.path...)
}

// fastTarget is fastHTU for a parsed URL: when u's scheme, host and path
// are already in normal form (lower-case http or https, a host of
// lower-case letters, digits, dots and hyphens with a non-default port
// without leading zeros, no user information, a path that needs no
// escaping), the htu is their concatenation and nothing is printed or
// allocated. Anything else returns false; the caller then goes through
// HTU(u.String()), which handles every case.
func fastTarget(u *url.URL) (target, bool) {
	var defPort string
	switch u.Scheme {
	case "https":
		defPort = "443"
	case "http":
		defPort = "80"
	default:
		return target{}, false
	}
	if u.Opaque != "" || u.User != nil || u.Host == "" {
		return target{}, false
	}
	host := u.Host
	i := 0
	for i < len(host) && isHostChar(host[i]) {
		i++
	}
	if i == 0 {
		return target{}, false
	}
	if i < len(host) && (host[i] != ':' || !allDigits(host[i+1:]) || !plainPort(host[i+1:], defPort)) {
		return target{}, false
	}
	path := u.Path
	if u.RawPath != "" || !plainQuery(u.RawQuery) {
		return target{}, false
	}
	for j := 0; j < len(path); j++ {
		if !isUnescapedPathChar(path[j]) {
			return target{}, false
		}
	}
	switch {
	case path == "":
		path = "/"
	case path[0] != '/':
		return target{}, false
	}
	return target{scheme: u.Scheme, host: host, path: path}, true
}

// plainPort reports whether the digits port are a port the fast paths
// keep as they are: not empty, not the scheme's default, no leading zero
// and at most five digits (anything else net/url normalises or refuses).
func plainPort(port, defPort string) bool {
	return port != "" && port[0] != '0' && port != defPort && len(port) <= 5
}

// plainQuery reports whether the raw query q, which u.String() writes as
// it is, reads back as the same query: no control character (net/url
// refuses the URL) and no '#' (the rest would read as a fragment, which
// may not parse). The query is not part of the htu, but the fast path
// must fail where HTU(u.String()) fails.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c < 0x20 || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isUnescapedPathChar reports whether url.URL.EscapedPath leaves c as it
// is in a Path without a RawPath: letters, digits, "-._~" and
// "$&+,/:;=@". (The other sub-delimiters, "!'()*", are escaped there
// unless RawPath keeps them.)
func isUnescapedPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~$&+,/:;=@", c) >= 0
}

// originOf cuts a normalised htu before its path.
func originOf(htu string) string {
	start := strings.Index(htu, "://") + len("://")
	if i := strings.IndexByte(htu[start:], '/'); i >= 0 {
		return htu[:start+i]
	}
	return htu
}

// fastHTU handles the common URL without parsing it: lower-case http or
// https, a host of lower-case letters, digits, dots and hyphens, a
// non-default port without leading zeros, a path of characters that
// net/http writes unchanged. Then the htu is a prefix of the URL and costs
// no allocation (unless the path is empty). Anything else returns false
// and goes through net/url; the fuzz test checks that both agree wherever
// this one answers.
func fastHTU(s string) (string, bool) {
	var rest string
	var defPort string
	switch {
	case strings.HasPrefix(s, "https://"):
		rest, defPort = s[len("https://"):], "443"
	case strings.HasPrefix(s, "http://"):
		rest, defPort = s[len("http://"):], "80"
	default:
		return "", false
	}
	schemeLen := len(s) - len(rest)
	// Host: [a-z0-9.-]+, then optionally ":" and a port.
	i := 0
	for i < len(rest) && isHostChar(rest[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	if i < len(rest) && rest[i] == ':' {
		j := i + 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if !plainPort(rest[i+1:j], defPort) {
			return "", false
		}
		i = j
	}
	authEnd := schemeLen + i
	// Path: up to the query or fragment.
	for i < len(rest) && isPlainPathChar(rest[i]) {
		i++
	}
	if i < len(rest) && rest[i] != '?' && rest[i] != '#' {
		return "", false
	}
	end := schemeLen + i
	// net/url refuses control characters anywhere and bad escapes in the
	// fragment; leave those to it, so that both paths fail alike.
	inFragment := false
	for _, c := range []byte(rest[i:]) {
		if c < 0x20 || c == 0x7f || inFragment && c == '%' {
			return "", false
		}
		inFragment = inFragment || c == '#'
	}
	if end == authEnd {
		return s[:end] + "/", true
	}
	if s[authEnd] != '/' {
		return "", false
	}
	return s[:end], true
}

// slowHTU parses s with net/url and builds the htu; it also returns the
// parsed URL for the tests.
func slowHTU(s string) (string, *url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL, query included; keep only its
		// reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	var defPort string
	switch u.Scheme { // url.Parse lower-cases the scheme
	case "https":
		defPort = "443"
	case "http":
		defPort = "80"
	default:
		return "", nil, fmt.Errorf("%w: scheme must be http or https", ErrInvalidURL)
	}
	if u.Opaque != "" {
		return "", nil, fmt.Errorf("%w: opaque URL", ErrInvalidURL)
	}
	host := u.Hostname()
	if host == "" {
		return "", nil, fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f {
			return "", nil, fmt.Errorf("%w: host must be ASCII (use its punycode form)", ErrInvalidURL)
		}
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(lowerASCII(host))
		b.WriteByte(']')
	} else {
		b.WriteString(lowerASCII(host))
	}
	if p := u.Port(); p != "" && p != defPort {
		b.WriteByte(':')
		b.WriteString(p)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		return "", nil, fmt.Errorf("%w: relative path", ErrInvalidURL)
	}
	b.WriteString(path)
	return b.String(), u, nil
}

func isHostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-'
}

// isPlainPathChar reports whether c is a path character that net/url keeps
// as it is: the unreserved characters, the sub-delimiters, ':', '@' and
// '/'. '%' is not among them, so percent-encodings take the slow path.
func isPlainPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

// lowerASCII lower-cases ASCII letters only, without allocating when there
// is nothing to change.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
