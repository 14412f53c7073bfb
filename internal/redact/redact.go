// Package redact is the single place where tokenward removes secrets from
// anything that may reach a log handler, an error string or a debug dump.
//
// It covers (PITFALLS T-01, R-02, STYLE item 12):
//   - the headers Authorization, Proxy-Authorization, Cookie, Set-Cookie and DPoP;
//   - query and form keys that carry secrets (code, code_verifier, access_token,
//     refresh_token, id_token, client_secret, assertion, client_assertion,
//     device_code, password, token, subject_token, actor_token, state);
//   - JWT-shaped strings and "Bearer ..." style credentials inside free text;
//   - URLs, which are reduced to scheme, host and path.
//
// Every package logs and builds error strings through these functions, so a
// fix here is a fix everywhere.
package redact

import (
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Placeholder replaces every secret value.
const Placeholder = "REDACTED"

// sensitiveHeaders lists canonical header names whose values are secrets.
var sensitiveHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"Set-Cookie":          true,
	"Dpop":                true, // canonical form of "DPoP"
}

// sensitiveParams lists query and form keys whose values are secrets.
var sensitiveParams = map[string]bool{
	"code":                      true,
	"code_verifier":             true,
	"access_token":              true,
	"refresh_token":             true,
	"id_token":                  true,
	"client_secret":             true,
	"assertion":                 true,
	"client_assertion":          true,
	"device_code":               true,
	"password":                  true,
	"token":                     true,
	"subject_token":             true,
	"actor_token":               true,
	"state":                     true,
	"user_code":                 true,
	"code_challenge":            true,
	"dpop_jkt":                  true,
	"verification_uri_complete": true,
}

// IsSensitiveHeader reports whether the header's value must never be logged.
// The name is compared case-insensitively.
func IsSensitiveHeader(name string) bool {
	return sensitiveHeaders[http.CanonicalHeaderKey(name)]
}

// IsSensitiveParam reports whether a query or form key carries a secret.
// The name is compared case-insensitively.
func IsSensitiveParam(name string) bool {
	return sensitiveParams[strings.ToLower(name)]
}

// Header returns a copy of h in which the values of sensitive headers are
// replaced by [Placeholder]. h is not modified.
func Header(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if IsSensitiveHeader(k) {
			out[k] = []string{Placeholder}
			continue
		}
		cp := make([]string, len(vs))
		for i, v := range vs {
			cp[i] = String(v)
		}
		out[k] = cp
	}
	return out
}

// Values returns a copy of v in which the values of sensitive keys are
// replaced by [Placeholder] and the others are passed through [String].
func Values(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		cp := make([]string, len(vs))
		for i, s := range vs {
			if IsSensitiveParam(k) {
				cp[i] = Placeholder
			} else {
				cp[i] = String(s)
			}
		}
		out[k] = cp
	}
	return out
}

// URL renders u as scheme://host/path: user info, query and fragment are
// dropped, because any of them may carry a secret. A nil URL renders as "".
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return String(c.String())
}

// URLString parses s and renders it like [URL]. A string that does not parse
// as a URL is passed through [String] instead.
func URLString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return String(s)
	}
	return URL(u)
}

var (
	// jwtRe matches JWT/JWS/JWE-shaped strings: base64url segments separated by dots,
	// starting with a base64url-encoded JSON object ("eyJ").
	jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,4}`)
	// schemeRe matches credentials after an HTTP auth scheme.
	schemeRe = regexp.MustCompile(`(?i)\b(bearer|dpop|basic|mac)(\s+)[A-Za-z0-9._~+/=\-]+`)
	// paramRe matches key=value pairs (query strings, form bodies, log text).
	paramRe = regexp.MustCompile(`(?i)\b(` + paramAlternation() + `)(\s*=\s*)([^&\s"',;]+)`)
	// jsonRe matches "key": "value" pairs in JSON text.
	jsonRe = regexp.MustCompile(`(?i)"(` + paramAlternation() + `)"(\s*:\s*)"(?:[^"\\]|\\.)*"`)
)

func paramAlternation() string {
	keys := make([]string, 0, len(sensitiveParams))
	for k := range sensitiveParams {
		keys = append(keys, regexp.QuoteMeta(k))
	}
	// Longest first so that "code_verifier" wins over "code".
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && len(keys[j]) > len(keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return strings.Join(keys, "|")
}

// String removes secrets from free text: JWT-shaped strings, credentials
// after an auth scheme ("Bearer x"), sensitive key=value pairs and sensitive
// JSON members. Text without secrets is returned unchanged.
func String(s string) string {
	if s == "" {
		return s
	}
	s = jsonRe.ReplaceAllString(s, `"${1}"${2}"`+Placeholder+`"`)
	s = paramRe.ReplaceAllString(s, `${1}${2}`+Placeholder)
	s = schemeRe.ReplaceAllString(s, `${1}${2}`+Placeholder)
	s = jwtRe.ReplaceAllString(s, Placeholder)
	return s
}

// Truncate passes s through [String], replaces invalid UTF-8 and control
// characters, and cuts the result to at most max bytes (adding "..."), so a
// server-supplied string (an HTML error page, an error_description) can go
// into an error message safely.
func Truncate(s string, max int) string {
	s = String(s)
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || (r < 0x20 && r != ' ') || r == 0x7f {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			if max > 3 {
				out := b.String()
				for len(out) > max-3 {
					_, size := utf8.DecodeLastRuneInString(out)
					out = out[:len(out)-size]
				}
				return out + "..."
			}
			return b.String()
		}
		b.WriteRune(r)
	}
	return b.String()
}

// HeaderValue is an [http.Header] that logs itself through [Header], so it
// can be passed to slog without leaking credentials.
type HeaderValue http.Header

// LogValue implements [slog.LogValuer].
func (h HeaderValue) LogValue() slog.Value {
	red := Header(http.Header(h))
	attrs := make([]slog.Attr, 0, len(red))
	for k, vs := range red {
		attrs = append(attrs, slog.String(k, strings.Join(vs, ", ")))
	}
	return slog.GroupValue(attrs...)
}

// URLValue is a *url.URL that logs itself through [URL].
type URLValue struct{ U *url.URL }

// LogValue implements [slog.LogValuer].
func (u URLValue) LogValue() slog.Value { return slog.StringValue(URL(u.U)) }
