package dpop

import (
	"net/http"
	"strings"
)

// Header names and error codes of RFC 9449.
const (
	// HeaderDPoP carries the proof on a request.
	HeaderDPoP = "DPoP"
	// HeaderNonce carries a server's nonce on a response.
	HeaderNonce = "DPoP-Nonce"
	// CodeUseNonce asks for a proof with the nonce the response carries
	// (section 8 and 9).
	CodeUseNonce = "use_dpop_nonce"
	// CodeInvalidProof means the proof was refused (section 7.1).
	CodeInvalidProof = "invalid_dpop_proof"
)

// Limits of what Challenge keeps of a server's text.
const (
	maxCodeLen = 64
	maxAlgs    = 16
	maxAlgLen  = 32
)

// Challenge is what a response's DPoP challenge and nonce say.
type Challenge struct {
	// Found is true when a WWW-Authenticate header has a DPoP challenge.
	Found bool
	// Error is the challenge's error parameter ("use_dpop_nonce",
	// "invalid_dpop_proof", "invalid_token", ...), or "" when it has none
	// or it is not a plausible error code (printable ASCII but '"' and
	// '\\', at most 64 bytes), so it is safe to log.
	Error string
	// Algs is the challenge's algs parameter, split on spaces: the
	// algorithms the resource server accepts. Values that are not
	// algorithm names are dropped.
	Algs []string
	// Nonce is the response's DPoP-Nonce header when it is a valid nonce,
	// else "". A server may send one on any response, and the caller
	// should keep it (NonceCache.Set) whatever the status.
	Nonce string
}

// UseNonce reports whether the server asked for a proof with a nonce
// (error="use_dpop_nonce") and sent one, so that one retry with it can
// succeed.
func (c Challenge) UseNonce() bool { return c.Error == CodeUseNonce && c.Nonce != "" }

// InvalidProof reports whether the server refused the proof itself
// (error="invalid_dpop_proof"); retrying the same way will not help.
func (c Challenge) InvalidProof() bool { return c.Error == CodeInvalidProof }

// ParseChallenge reads a resource server's answer (RFC 9449 section 7.1
// and 9): the first DPoP challenge of the WWW-Authenticate headers, which
// may hold several challenges on one line or over several lines (a Bearer
// challenge next to it is skipped, commas and escapes inside quoted
// strings are honoured, scheme and parameter names are case-insensitive),
// and the DPoP-Nonce header. It never fails: what it cannot read is
// ignored.
func ParseChallenge(h http.Header) Challenge {
	c := Challenge{Nonce: ResponseNonce(h)}
	lines := h.Values("WWW-Authenticate")
	if len(lines) == 0 {
		return c
	}
	params, ok := dpopParams(strings.Join(lines, ","))
	if !ok {
		return c
	}
	c.Found = true
	if e := params["error"]; len(e) <= maxCodeLen && isNonce(e) {
		c.Error = e
	}
	for _, a := range strings.Fields(params["algs"]) {
		if len(c.Algs) == maxAlgs {
			break
		}
		if len(a) <= maxAlgLen && isAlgName(a) {
			c.Algs = append(c.Algs, a)
		}
	}
	return c
}

// ResponseNonce returns the DPoP-Nonce header of a response when it holds
// a valid nonce (RFC 9449 section 8: printable ASCII but '"' and '\\'),
// at most MaxNonceLen bytes, else "".
func ResponseNonce(h http.Header) string {
	n := strings.Trim(h.Get(HeaderNonce), " \t")
	if !isNonce(n) {
		return ""
	}
	return n
}

// TokenEndpointNonce reads a token endpoint's request for a nonce (RFC
// 9449 section 8): an error response (status 400 or above) whose JSON
// error code, as the caller parsed it, is use_dpop_nonce and whose
// DPoP-Nonce header holds a valid nonce. It returns that nonce and true,
// so that the caller retries once with it.
func TokenEndpointNonce(status int, errorCode string, h http.Header) (string, bool) {
	if status < 400 || errorCode != CodeUseNonce {
		return "", false
	}
	n := ResponseNonce(h)
	return n, n != ""
}

// dpopParams finds the first DPoP challenge in a WWW-Authenticate value
// and returns its parameters (names lower-cased, quoted values unescaped,
// the first of a repeated name kept).
//
// The value is a comma-separated list (RFC 9110 section 11.6.1) whose
// elements are either the start of a challenge, "scheme", "scheme
// token68" or "scheme name=value", or a further "name=value" of the
// challenge before them. Empty elements are allowed and skipped.
func dpopParams(s string) (map[string]string, bool) {
	var params map[string]string
	in := false // inside the DPoP challenge
	for len(s) > 0 {
		var elem string
		elem, s = nextElement(s)
		elem = strings.Trim(elem, " \t")
		if elem == "" {
			continue
		}
		name, after := cutToken(elem)
		rest := strings.TrimLeft(after, " \t")
		switch {
		case name != "" && strings.HasPrefix(rest, "="):
			// A parameter of the current challenge.
			if in {
				addParam(params, name, rest[1:])
			}
		case name != "" && (after == "" || after[0] == ' ' || after[0] == '\t'):
			// A new challenge: the end of the DPoP one, or its start.
			if in {
				return params, true
			}
			if !strings.EqualFold(name, "DPoP") {
				continue
			}
			in = true
			params = map[string]string{}
			// Its first parameter shares the element; a token68 ("abc==")
			// yields an empty value, which addParam refuses.
			p, r := cutToken(rest)
			if r = strings.TrimLeft(r, " \t"); p != "" && strings.HasPrefix(r, "=") {
				addParam(params, p, r[1:])
			}
		default:
			// Malformed (a quoted string where a name belongs, a token
			// glued to other characters): skipped.
		}
	}
	return params, in
}

// addParam parses "BWS value" (a token or a quoted string, nothing after
// it) and records it under name unless name is already set.
func addParam(params map[string]string, name, v string) {
	v = strings.Trim(v, " \t")
	if strings.HasPrefix(v, `"`) {
		var ok bool
		if v, ok = unquote(v); !ok {
			return
		}
	} else if !isToken(v) {
		return
	}
	name = strings.ToLower(name)
	if _, dup := params[name]; !dup {
		params[name] = v
	}
}

// nextElement returns the text up to the next comma outside a quoted
// string, and what follows that comma.
func nextElement(s string) (elem, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // the escaped character, whatever it is
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// cutToken splits s after its leading HTTP token.
func cutToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// unquote decodes a quoted string that makes up all of s.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			if i != len(s)-1 {
				return "", false // text after the closing quote
			}
			return b.String(), true
		default:
			b.WriteByte(c)
		}
	}
	return "", false // no closing quote
}

// isAlgName reports whether s looks like a JWS algorithm name.
func isAlgName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '+') {
			return false
		}
	}
	return s != ""
}
