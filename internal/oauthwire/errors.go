package oauthwire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/tokenward/tokenward/internal/httpretry"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
)

// Standard OAuth error codes (RFC 6749 section 5.2, RFC 8628 section 3.5,
// RFC 8707, RFC 7009).
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeInvalidScope            = "invalid_scope"
	CodeInvalidTarget           = "invalid_target"
	CodeAccessDenied            = "access_denied"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeAuthorizationPending    = "authorization_pending"
	CodeSlowDown                = "slow_down"
	CodeExpiredToken            = "expired_token"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeUnsupportedResponseType = "unsupported_response_type"
)

// Limits of the sanitized fields of an Error.
const (
	maxCodeLen    = 64
	maxDescLen    = 256
	maxURILen     = 256
	maxExcerptLen = 160
	maxErrorLen   = 512
)

// Error is an error response from an authorization server: an RFC 6749
// section 5.2 JSON error, or any other non-success response (an HTML 502
// page, a plain-text 429).
//
// All string fields are sanitized when the Error is built (secrets and long
// token-like words removed, control characters replaced, characters a
// terminal could act on escaped, lengths capped), so they are safe to log,
// to put into other error strings and to print on a terminal.
type Error struct {
	// StatusCode is the HTTP status (200 for the rare server that answers a
	// token request with 200 and an error member).
	StatusCode int
	// Code is the "error" member ("invalid_grant"), "" when the body had none.
	Code string
	// Description is the "error_description" member, sanitized and cut to
	// 256 bytes.
	Description string
	// URI is the "error_uri" member reduced to scheme://host/path ("" unless
	// it is an absolute http(s) URL).
	URI string
	// RetryAfter is the server's Retry-After hint (0 when absent or invalid).
	// It is reported as sent; callers cap it.
	RetryAfter time.Duration
	// ContentType is the response's media type ("text/html").
	ContentType string
	// Excerpt is a short sanitized excerpt of a body without an error code
	// (the <title> of an HTML page, the start of a text body).
	Excerpt string
}

// Error returns a short (at most 512 bytes) description that never contains
// a secret from the response, in words a caller can put after "the server
// answered": "invalid_grant (HTTP 400): Token revoked", or "HTTP 502
// (text/html): Bad Gateway; retry after 30s". It names no package: the
// caller says which operation got the answer.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Code != "" {
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Code, e.StatusCode)
		if e.Description != "" {
			b.WriteString(": ")
			b.WriteString(e.Description)
		}
	} else {
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
		if e.ContentType != "" {
			fmt.Fprintf(&b, " (%s)", e.ContentType)
		}
		if e.Excerpt != "" {
			b.WriteString(": ")
			b.WriteString(e.Excerpt)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	return redact.Truncate(b.String(), maxErrorLen)
}

// OAuthError returns the status, code and description, the shape the refresh
// cache classifies errors by.
func (e *Error) OAuthError() (status int, code, description string) {
	return e.StatusCode, e.Code, e.Description
}

// Temporary reports whether the server said to try again later: 5xx, 429, or
// the temporarily_unavailable / server_error / slow_down codes.
func (e *Error) Temporary() bool {
	switch e.Code {
	case CodeTemporarilyUnavailable, CodeServerError, CodeSlowDown:
		return true
	}
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// ParseErrorResponse builds an *Error from a non-success response (or a
// success response whose body carries an "error" member). It never fails:
// JSON and form-encoded error bodies are read for error, error_description
// and error_uri; anything else (HTML, text, garbage) contributes only a
// short sanitized excerpt. Retry-After is parsed relative to time.Now.
func ParseErrorResponse(status int, h http.Header, body []byte) *Error {
	return parseErrorResponse(status, h, body, time.Now())
}

func parseErrorResponse(status int, h http.Header, body []byte, now time.Time) *Error {
	if h == nil {
		h = http.Header{}
	}
	e := &Error{StatusCode: status, ContentType: sanitize(mediaType(h), 64)}
	if d, ok := httpretry.ParseRetryAfter(h.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
	if len(body) > MaxBody {
		body = body[:MaxBody]
	}
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	var code, desc, uri string
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var m map[string]json.RawMessage
		if json.Unmarshal(trimmed, &m) == nil {
			code, desc, uri = jsonString(m["error"]), jsonString(m["error_description"]), jsonString(m["error_uri"])
		}
	} else if len(trimmed) > 0 && trimmed[0] != '<' {
		if v, err := url.ParseQuery(string(trimmed)); err == nil || v.Has("error") {
			code, desc, uri = v.Get("error"), v.Get("error_description"), v.Get("error_uri")
		}
	}
	e.Code = sanitize(code, maxCodeLen)
	if e.Code != "" {
		e.Description = sanitize(desc, maxDescLen)
		if isWebURL(uri) {
			e.URI = sanitize(redact.URLString(uri), maxURILen)
		}
		return e
	}
	e.Excerpt = excerpt(trimmed, e.ContentType)
	return e
}

// jsonString returns raw as a string when it is a JSON string, else "".
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

var (
	titleRe  = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	scriptRe = regexp.MustCompile(`(?is)<(script|style)[^>]*>.*?</(script|style)>`)
	tagRe    = regexp.MustCompile(`(?s)<[^>]*>`)
	// longWordRe matches runs of token characters long enough to be a secret.
	longWordRe = regexp.MustCompile(`[A-Za-z0-9._~+/=\-]{20,}`)
	spaceRe    = regexp.MustCompile(`\s+`)
)

// excerpt turns a body without an error code into a short, safe string.
func excerpt(body []byte, mt string) string {
	const window = 8 << 10
	if len(body) == 0 {
		return ""
	}
	s := string(body)
	if mt == "text/html" || mt == "application/xhtml+xml" || strings.HasPrefix(s, "<") {
		if m := titleRe.FindStringSubmatch(s); m != nil {
			s = m[1]
		} else {
			if len(s) > 4*window {
				s = cutWord(s, 4*window)
			}
			s = scriptRe.ReplaceAllString(s, " ")
			s = tagRe.ReplaceAllString(s, " ")
		}
		s = html.UnescapeString(s)
	}
	if len(s) > window {
		s = cutWord(s, window)
	}
	return sanitize(s, maxExcerptLen)
}

// cutWord cuts s to at most n bytes and drops a trailing partial word, so a
// secret cut in half cannot survive as a short, unredacted fragment.
func cutWord(s string, n int) string {
	s = s[:n]
	if i := strings.LastIndexAny(s, " \t\r\n<>\"'&;,"); i >= 0 {
		return s[:i]
	}
	return ""
}

// sanitize makes server-supplied text safe for error strings, logs and
// terminals: whitespace is collapsed; redact's rules remove JWTs, key=value
// secrets and credentials after auth schemes; any remaining run of 20 or
// more token characters that contains a digit (an opaque token, a code, a
// canary), or of 40 or more in any case, is replaced; C0 controls become
// spaces; what a terminal could still act on (C1 controls such as the
// 8-bit CSI, bidi overrides and other format characters) is shown escaped,
// as \u009b or \u202e, so that whoever prints the text needs no escaping
// of their own; the result is cut to max bytes.
func sanitize(s string, max int) string {
	if s == "" {
		return ""
	}
	if len(s) > 4*max+1024 {
		s = cutWord(s, 4*max+1024)
	}
	s = spaceRe.ReplaceAllString(s, " ")
	s = redactLongWords(s)
	s = redact.Truncate(s, max) // C0 controls and invalid UTF-8 become spaces
	if t := redact.Terminal(s); t != s {
		// An escape next to a word may make a longer run: check again.
		s = redact.Truncate(redactLongWords(t), max)
	}
	return strings.TrimSpace(s)
}

// redactLongWords replaces the runs of token characters that may be
// secrets: 20 or more with a digit, or 40 or more.
func redactLongWords(s string) string {
	return longWordRe.ReplaceAllStringFunc(s, func(w string) string {
		if len(w) >= 40 || strings.ContainsAny(w, "0123456789") {
			return redact.Placeholder
		}
		return w
	})
}
