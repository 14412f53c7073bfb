package transport

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenward/tokenward/internal/redact"
)

// Error codes a resource server may put in a Bearer challenge (RFC 6750
// section 3.1, RFC 9470 section 3).
const (
	ErrorCodeInvalidRequest                 = "invalid_request"
	ErrorCodeInvalidToken                   = "invalid_token"
	ErrorCodeInsufficientScope              = "insufficient_scope"
	ErrorCodeInsufficientUserAuthentication = "insufficient_user_authentication"
)

// Challenge is one authentication challenge of a WWW-Authenticate (or
// Proxy-Authenticate) header, RFC 9110 section 11.6.1:
//
//	challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//
// A challenge carries either Token68 or Params, never both.
type Challenge struct {
	// Scheme is the auth-scheme as sent ("Bearer", "DPoP", "Basic", ...).
	// Schemes are case-insensitive: compare with strings.EqualFold.
	Scheme string
	// Token68 is the token68 form of the challenge, if it has one.
	Token68 string
	// Params holds the auth-params with lower-cased names and unescaped
	// quoted-string values. When a name repeats, the first value wins. Nil
	// when there are none.
	Params map[string]string
}

// Param returns the value of the named parameter (case-insensitive), or ""
// if it is absent.
func (c Challenge) Param(name string) string {
	if v, ok := c.Params[name]; ok {
		return v
	}
	return c.Params[strings.ToLower(name)]
}

// String formats c as a challenge, parameters in name order with quoted
// values, so that parsing the result yields c again.
func (c Challenge) String() string {
	var b strings.Builder
	b.WriteString(c.Scheme)
	if c.Token68 != "" {
		b.WriteByte(' ')
		b.WriteString(c.Token68)
		return b.String()
	}
	names := make([]string, 0, len(c.Params))
	for k := range c.Params {
		names = append(names, k)
	}
	slices.Sort(names)
	for i, k := range names {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString(`="`)
		v := c.Params[k]
		for j := 0; j < len(v); j++ {
			if v[j] == '"' || v[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[j])
		}
		b.WriteByte('"')
	}
	return b.String()
}

// ParseChallenges returns the challenges of every WWW-Authenticate line of h,
// in order. Several challenges may share one line and a list may continue
// over several lines (RFC 9110 section 5.3). Scheme and parameter names are
// matched case-insensitively, quoted strings may contain commas and
// backslash escapes, and token68 credentials are recognised. Malformed parts
// are skipped up to the next comma; the parser never fails and never
// panics.
func ParseChallenges(h http.Header) []Challenge {
	lines := h.Values("WWW-Authenticate")
	switch len(lines) {
	case 0:
		return nil
	case 1:
		return parseChallenges(lines[0])
	}
	return parseChallenges(strings.Join(lines, ", "))
}

// findChallenge returns the first challenge of h whose scheme is scheme.
func findChallenge(h http.Header, scheme string) (Challenge, bool) {
	for _, c := range ParseChallenges(h) {
		if strings.EqualFold(c.Scheme, scheme) {
			return c, true
		}
	}
	return Challenge{}, false
}

// challengeParser is a cursor over one header value.
type challengeParser struct {
	s string
	i int
}

func parseChallenges(s string) []Challenge {
	p := challengeParser{s: s}
	var out []Challenge
	for {
		p.skipSeparators()
		if p.eof() {
			return out
		}
		scheme := p.token()
		if scheme == "" {
			p.skipItem()
			continue
		}
		c := Challenge{Scheme: scheme}
		sp := p.skipWS()
		if !p.eof() && p.peek() != ',' {
			if sp == 0 {
				// "Scheme=..." or "Scheme\"...": not a challenge.
				p.skipItem()
				continue
			}
			if t, ok := p.token68(); ok {
				c.Token68 = t
			} else {
				c.Params = p.params()
			}
		}
		out = append(out, c)
	}
}

func (p *challengeParser) eof() bool  { return p.i >= len(p.s) }
func (p *challengeParser) peek() byte { return p.s[p.i] }

// skipWS skips spaces and tabs and returns how many it skipped.
func (p *challengeParser) skipWS() int {
	start := p.i
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
	return p.i - start
}

// skipSeparators skips whitespace and empty list elements.
func (p *challengeParser) skipSeparators() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

// skipItem skips to the next comma outside a quoted string (or the end). It
// always makes progress unless it is already at a comma or the end.
func (p *challengeParser) skipItem() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			return
		case '"':
			p.quoted()
		default:
			p.i++
		}
	}
}

func (p *challengeParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// token68 reads 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
// if it is the whole rest of the challenge (followed by a comma or the end);
// otherwise it leaves the cursor where it was.
func (p *challengeParser) token68() (string, bool) {
	start := p.i
	for p.i < len(p.s) && isToken68Char(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", false
	}
	for p.i < len(p.s) && p.s[p.i] == '=' {
		p.i++
	}
	end := p.i
	p.skipWS()
	if p.eof() || p.peek() == ',' {
		return p.s[start:end], true
	}
	p.i = start
	return "", false
}

// params reads #auth-param up to the start of the next challenge (or the
// end). A malformed parameter is skipped up to the next comma.
func (p *challengeParser) params() map[string]string {
	var m map[string]string
	first := true
	for {
		p.skipSeparators()
		if p.eof() {
			return m
		}
		start := p.i
		name := p.token()
		p.skipWS()
		if name == "" || p.eof() || p.peek() != '=' {
			if !first && name != "" {
				// A token not followed by "=": the next challenge's scheme.
				p.i = start
				return m
			}
			p.skipItem()
			first = false
			continue
		}
		first = false
		p.i++ // "="
		p.skipWS()
		var val string
		ok := false
		if !p.eof() && p.peek() == '"' {
			val, ok = p.quoted()
		} else {
			val = p.token()
			ok = val != ""
		}
		p.skipWS()
		if !ok || (!p.eof() && p.peek() != ',') {
			p.skipItem()
			continue
		}
		name = strings.ToLower(name)
		if _, dup := m[name]; !dup {
			if m == nil {
				m = make(map[string]string, 4)
			}
			m[name] = val
		}
	}
}

// quoted reads a quoted-string starting at the opening quote and returns
// its unescaped value; ok is false if it is not terminated.
func (p *challengeParser) quoted() (string, bool) {
	p.i++ // opening quote
	start := p.i
	var b []byte // only allocated when there are escapes
	for p.i < len(p.s) {
		switch ch := p.s[p.i]; ch {
		case '"':
			v := p.s[start:p.i]
			if b != nil {
				v = string(b)
			}
			p.i++
			return v, true
		case '\\':
			if b == nil {
				b = append(make([]byte, 0, len(p.s)-start), p.s[start:p.i]...)
			}
			if p.i+1 >= len(p.s) {
				p.i = len(p.s)
				return "", false
			}
			b = append(b, p.s[p.i+1])
			p.i += 2
		default:
			if b != nil {
				b = append(b, ch)
			}
			p.i++
		}
	}
	return "", false
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68Char(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// BearerError is what a resource server reported in a Bearer challenge
// (RFC 6750 section 3, RFC 9470 section 3): why a token was refused
// (invalid_token), that it lacks scope (insufficient_scope, with the scope
// needed in Scope) or that the user must authenticate again, more strongly
// or more recently (insufficient_user_authentication, with ACRValues and
// MaxAge). Get one from a response with [BearerErrorFrom].
//
// Description and URI are server-controlled text: treat them as untrusted.
// They are left out of the Error string.
type BearerError struct {
	// StatusCode is the HTTP status of the response (401, 403, ...).
	StatusCode int
	// Code is the error parameter, e.g. [ErrorCodeInsufficientScope].
	Code string
	// Description is error_description.
	Description string
	// URI is error_uri.
	URI string
	// Realm is the realm parameter.
	Realm string
	// Scope is the space-delimited scope parameter; see [BearerError.Scopes].
	Scope string
	// ACRValues is the space-delimited acr_values parameter (RFC 9470); see
	// [BearerError.ACRs].
	ACRValues string
	// MaxAge is the max_age parameter in seconds (RFC 9470), or -1 when it
	// is absent or not a non-negative integer. 0 means "authenticate now".
	MaxAge int64
	// Params holds every parameter of the challenge, names lower-cased.
	Params map[string]string
}

// BearerErrorFrom returns the error of the first Bearer challenge in resp's
// WWW-Authenticate header that has an error parameter. ok is false when there
// is none (including a nil resp).
func BearerErrorFrom(resp *http.Response) (e *BearerError, ok bool) {
	if resp == nil {
		return nil, false
	}
	for _, c := range ParseChallenges(resp.Header) {
		if !strings.EqualFold(c.Scheme, "Bearer") || c.Param("error") == "" {
			continue
		}
		e := &BearerError{
			StatusCode:  resp.StatusCode,
			Code:        c.Param("error"),
			Description: c.Param("error_description"),
			URI:         c.Param("error_uri"),
			Realm:       c.Param("realm"),
			Scope:       c.Param("scope"),
			ACRValues:   c.Param("acr_values"),
			MaxAge:      -1,
			Params:      c.Params,
		}
		if v, ok := c.Params["max_age"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				e.MaxAge = n
			}
		}
		return e, true
	}
	return nil, false
}

// Scopes returns the scopes of the scope parameter.
func (e *BearerError) Scopes() []string { return strings.Fields(e.Scope) }

// ACRs returns the authentication context class references of the
// acr_values parameter.
func (e *BearerError) ACRs() []string { return strings.Fields(e.ACRValues) }

// Error implements error with the status, the code and, when present, the
// scope, ACR values and max_age; never the description.
func (e *BearerError) Error() string {
	var b strings.Builder
	b.WriteString("transport: resource server refused the token: ")
	if e.StatusCode != 0 {
		b.WriteString(strconv.Itoa(e.StatusCode))
		b.WriteByte(' ')
	}
	b.WriteString(redact.Truncate(e.Code, 64))
	if e.Scope != "" {
		b.WriteString(" (scope ")
		b.WriteString(strconv.Quote(redact.Truncate(e.Scope, 256)))
		b.WriteByte(')')
	}
	if e.ACRValues != "" {
		b.WriteString(" (acr_values ")
		b.WriteString(strconv.Quote(redact.Truncate(e.ACRValues, 256)))
		b.WriteByte(')')
	}
	if e.MaxAge >= 0 {
		b.WriteString(" (max_age ")
		b.WriteString(strconv.FormatInt(e.MaxAge, 10))
		b.WriteByte(')')
	}
	return b.String()
}
