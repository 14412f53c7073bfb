// Package redact is the single place where tokenward removes secrets from
// anything that may reach a log handler, an error string or a debug dump.
//
// It covers every form in which a secret has been seen leaking from OAuth
// clients: headers, URLs with queries (retry libraries log them), error
// bodies that echo a credential, and free text:
//   - the headers Authorization, Proxy-Authorization, Cookie, Set-Cookie and DPoP;
//   - query and form keys that carry secrets (code, code_verifier, access_token,
//     refresh_token, id_token, client_secret, assertion, client_assertion,
//     device_code, password, token, subject_token, actor_token, state);
//   - JWT-shaped strings and "Bearer ..." style credentials inside free text
//     (but not the ordinary words of prose such as "only Bearer is supported");
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
	// schemeRe matches an HTTP auth scheme and the token68-shaped word
	// after it (RFC 9110 section 11.2), which is redacted when it looks like
	// a credential (see credentialAfterScheme).
	schemeRe = regexp.MustCompile(`(?i)\b(?:bearer|dpop|basic|mac)\s+([A-Za-z0-9._~+/=\-]+)`)
	// proseWord matches an ordinary word: letters only, lower case,
	// capitalised or all capitals, optionally hyphenated, optionally ending
	// in a full stop or comma. maxProseWord bounds its length.
	proseWord = regexp.MustCompile(`^(?:[A-Z]?[a-z]+|[A-Z]+)(?:-(?:[a-z]+|[A-Z]+))*[.,]?$`)
	// paramRe matches key=value pairs (query strings, form bodies, log text).
	paramRe = regexp.MustCompile(`(?i)\b(` + paramAlternation() + `)(\s*=\s*)([^&\s"',;]+)`)
	// jsonRe matches "key": "value" pairs in JSON text.
	jsonRe = regexp.MustCompile(`(?i)"(` + paramAlternation() + `)"(\s*:\s*)"(?:[^"\\]|\\.)*"`)
)

// maxProseWord is the longest word after an auth scheme that is taken for
// prose rather than a credential ("authentication" has 14 letters).
const maxProseWord = 16

// credentialAfterScheme reports whether word, which follows an auth scheme
// name ("Bearer", "Basic", "DPoP", "MAC") in text, is a credential to
// redact. next is the text that follows word.
//
// Everything is a credential except
//   - an ordinary word of at most maxProseWord letters (lower case,
//     capitalised or all capitals, possibly hyphenated, possibly followed
//     by a full stop or comma), so that prose such as "only Bearer is
//     supported" or "Basic authentication failed" stays readable;
//   - the name of an auth-param with a quoted value (`Bearer realm="api",
//     error="invalid_token"`: word ends in "=" and a quoted string
//     follows), so that challenges stay readable.
//
// There is deliberately no minimum length: a 6-character opaque token such
// as "abc123" is still redacted. The trade-off: a credential made only of
// at most 16 letters with no digit, symbol or inner capital ("Bearer
// sesame") cannot be told from a word and is kept. Real access tokens
// (JWTs, random base64, base64url or hex strings, "ghp_...", "ya29....")
// and Basic credentials (base64 of "user:password", which mixes cases or
// ends in "=") rarely have that shape: a random base64url string of n
// characters has it with a probability of about 3*(26/64)^n, 1 in 450 for
// n = 8 and 1 in 600,000 for n = 16, and real tokens are longer. A
// letters-only string of more than 16 letters is redacted even when it is
// a word.
func credentialAfterScheme(word, next string) bool {
	if strings.HasSuffix(word, "=") && strings.HasPrefix(next, `"`) {
		return false // name="value": an auth-param, not token68
	}
	letters := len(strings.TrimRight(word, ".,")) - strings.Count(word, "-")
	return letters > maxProseWord || !proseWord.MatchString(word)
}

// redactSchemes replaces the credential after each auth scheme name in s.
// A word kept as prose is scanned again, so "Bearer Bearer <token>" loses
// its token.
func redactSchemes(s string) string {
	var b strings.Builder
	pos, done := 0, 0 // pos: where to search next; done: s[:done] is in b
	for pos < len(s) {
		m := schemeRe.FindStringSubmatchIndex(s[pos:])
		if m == nil {
			break
		}
		start, end := pos+m[2], pos+m[3]
		if !credentialAfterScheme(s[start:end], s[end:]) {
			pos = start
			continue
		}
		b.WriteString(s[done:start])
		b.WriteString(Placeholder)
		done, pos = end, end
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

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
	s = redactSchemes(s)
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
