package oauthwire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// ParseTokenResponse parses a token endpoint response (RFC 6749 section 5.1).
//
// status and h are the response's; body is at most MaxBody+1 bytes read from
// it; sent is the moment the request was sent (expiry is computed from it,
// not from when the response arrived; the zero time means time.Now()).
//
// A non-2xx status yields an *Error (see ParseErrorResponse), as does a 2xx
// body that has an "error" member and no access_token. A 2xx body larger
// than MaxBody yields ErrBodyTooLarge (a non-2xx one is still an *Error,
// built from its first MaxBody bytes).
//
// Bodies: JSON (application/json with or without charset, or any
// content type when the body is a JSON object) and, leniently,
// application/x-www-form-urlencoded or text/plain bodies that parse as a
// form (GitHub's default). A body that parses as neither yields
// ErrMalformedResponse, or ErrUnexpectedContentType when the content type
// says it was never meant to be one (an HTML login page).
//
// A response with a usable access_token is never rejected because an
// optional field is odd. expires_in (JSON number or string, or form value):
//
//	3600, "3600", " 3600 ", 3.6e3 -> 3600 s
//	3599.5, "3599.5"               -> 3599 s (rounded down)
//	absent, null, 0, negative,
//	"soon", true, {}, NaN          -> unknown: Expiry and ExpiresIn zero
//	2^40, 1e300                    -> clamped to MaxExpiresIn (one year)
//
// An unknown expiry is the caller's to resolve (a JWT exp, then a default
// lifetime); oauth2.Token treats a zero Expiry as "never expires", which
// tokenward's cache does not: a token kept forever would be sent long
// after the server stopped accepting it.
//
// The token carries: AccessToken; TokenType exactly as sent ("" when absent
// or null; a non-string value as its JSON text, so it cannot pass for
// Bearer; the cache validates it); RefreshToken; Expiry and ExpiresIn; and,
// via WithExtra, every other response member except access_token and
// refresh_token (JSON values as encoding/json decodes them into any, form
// values as strings; a JSON array "scope" is joined with spaces), plus
// tokenx.KeyRefreshTokenExpiry (time.Time, UTC) computed from
// refresh_token_expires_in, tokenx.KeySubject, the ID token's unverified
// "sub" (a display hint, never an authorization decision), and
// tokenx.KeyExtraNames, the sorted names of all of these, so that copies
// of the token can list them.
func ParseTokenResponse(status int, h http.Header, body []byte, sent time.Time) (*oauth2.Token, error) {
	if h == nil {
		h = http.Header{}
	}
	if status < 200 || status > 299 {
		return nil, ParseErrorResponse(status, h, body) // reads at most MaxBody bytes
	}
	if len(body) > MaxBody {
		return nil, ErrBodyTooLarge
	}
	if sent.IsZero() {
		sent = time.Now()
	}
	mt := mediaType(h)
	f, err := decodeFields(body, mt)
	if err != nil {
		return nil, err
	}
	at, ok := f.str("access_token")
	if !ok || !validAccessToken(at) {
		if _, hasErr := f.str("error"); hasErr {
			return nil, ParseErrorResponse(status, h, body)
		}
		switch {
		case f.form != nil && !isFormType(mt) && !isJSONType(mt):
			return nil, fmt.Errorf("%w %q: body is neither JSON nor a form with an access_token", ErrUnexpectedContentType, sanitize(mt, 64))
		case f.form != nil && isJSONType(mt):
			return nil, fmt.Errorf("%w: content type %s but body is not a JSON object", ErrMalformedResponse, mt)
		}
		return nil, ErrMissingAccessToken
	}
	tok := &oauth2.Token{AccessToken: at, TokenType: f.tokenType()}
	if rt, ok := f.str("refresh_token"); ok {
		tok.RefreshToken = rt
	}
	if d, ok := f.lifetime("expires_in"); ok {
		tok.ExpiresIn = int64(d / time.Second)
		tok.Expiry = sent.Add(d)
	}
	extra := f.extras()
	if d, ok := f.lifetime("refresh_token_expires_in"); ok {
		extra[tokenx.KeyRefreshTokenExpiry] = sent.Add(d).UTC()
	}
	if idt, ok := extra["id_token"].(string); ok {
		if sub, ok := unverifiedSubject(idt); ok {
			extra[tokenx.KeySubject] = sub
		}
	}
	// oauth2.Token looks extras up by name only; the list of names lets
	// later copies of the token (the token cache's, the store's) keep
	// provider-specific members such as Salesforce's instance_url.
	names := make([]string, 0, len(extra))
	for k := range extra {
		names = append(names, k)
	}
	slices.Sort(names)
	extra[tokenx.KeyExtraNames] = names
	return tok.WithExtra(extra), nil
}

// fields is a decoded response body: exactly one of json and form is set.
type fields struct {
	json map[string]json.RawMessage
	form url.Values
}

// decodeFields decodes a JSON object or a form. Anything that starts like a
// JSON object must be one.
func decodeFields(body []byte, mt string) (fields, error) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	if len(trimmed) == 0 {
		return fields{}, fmt.Errorf("%w: empty body", ErrMissingAccessToken)
	}
	if trimmed[0] == '{' {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &m); err != nil {
			return fields{}, fmt.Errorf("%w: invalid JSON object (content type %s)", ErrMalformedResponse, sanitize(orNone(mt), 64))
		}
		return fields{json: m}, nil
	}
	// url.ParseQuery keeps every well-formed pair even when it reports an
	// error for another one.
	v, _ := url.ParseQuery(string(trimmed))
	return fields{form: v}, nil
}

func orNone(mt string) string {
	if mt == "" {
		return "none"
	}
	return mt
}

// str returns a string member: a JSON string or a form value.
func (f fields) str(key string) (string, bool) {
	if f.form != nil {
		if !f.form.Has(key) {
			return "", false
		}
		return f.form.Get(key), true
	}
	raw, ok := f.json[key]
	if !ok || len(raw) == 0 {
		return "", false
	}
	if raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// tokenType returns token_type as sent. A JSON value that is neither a
// string nor null is kept as its (cut) JSON text so that it can never be
// mistaken for an absent type, which callers treat as Bearer.
func (f fields) tokenType() string {
	if f.form != nil {
		return f.form.Get("token_type")
	}
	raw, ok := f.json["token_type"]
	if !ok || string(raw) == "null" {
		return ""
	}
	if s, ok := f.str("token_type"); ok {
		return s
	}
	s := string(raw)
	if len(s) > 32 {
		s = s[:32]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return s
}

// lifetime parses an optional lifetime in seconds (see ParseTokenResponse).
func (f fields) lifetime(key string) (time.Duration, bool) {
	var s string
	if f.form != nil {
		if !f.form.Has(key) {
			return 0, false
		}
		s = f.form.Get(key)
	} else {
		raw, ok := f.json[key]
		if !ok {
			return 0, false
		}
		if len(raw) > 0 && raw[0] == '"' {
			if json.Unmarshal(raw, &s) != nil {
				return 0, false
			}
		} else {
			s = string(raw)
		}
	}
	return parseSeconds(s)
}

// parseSeconds parses a positive number of seconds, rounding fractions down
// and clamping to MaxExpiresIn. ok is false for zero, negative, non-finite
// or unparsable values.
func parseSeconds(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, false
	}
	const maxSecs = int64(MaxExpiresIn / time.Second)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0, false
		}
		if n > maxSecs {
			n = maxSecs
		}
		return time.Duration(n) * time.Second, true
	}
	fl, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && !isRangeErr(err):
		return 0, false
	case err == nil && (math.IsNaN(fl) || math.IsInf(fl, 0)):
		return 0, false // the words "NaN", "Inf", "infinity": garbage
	case fl < 1:
		return 0, false
	}
	if math.IsInf(fl, 1) || fl > float64(maxSecs) { // 1e400 overflows to +Inf
		return MaxExpiresIn, true
	}
	return time.Duration(math.Floor(fl)) * time.Second, true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// extras returns every member except the two secrets that have their own
// fields, decoded the way encoding/json decodes into any.
func (f fields) extras() map[string]any {
	out := map[string]any{}
	if f.form != nil {
		for k, vs := range f.form {
			if k == "access_token" || k == "refresh_token" || len(vs) == 0 {
				continue
			}
			out[k] = vs[0]
		}
		return out
	}
	for k, raw := range f.json {
		if k == "access_token" || k == "refresh_token" {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) == nil {
			out[k] = v
		}
	}
	if list, ok := out["scope"].([]any); ok {
		parts := make([]string, 0, len(list))
		for _, p := range list {
			if s, ok := p.(string); ok {
				parts = append(parts, s)
			}
		}
		out["scope"] = strings.Join(parts, " ")
	}
	return out
}

// validAccessToken: non-empty, and nothing that could not go into an HTTP
// header value (control characters).
func validAccessToken(s string) bool {
	if s == "" || strings.TrimSpace(s) == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// unverifiedSubject returns the "sub" claim of a JWT without verifying it.
func unverifiedSubject(jwt string) (string, bool) {
	parts := strings.SplitN(jwt, ".", 4)
	if len(parts) < 2 || len(parts[1]) > 64<<10 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", false
	}
	var claims struct {
		Sub any `json:"sub"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return "", false
	}
	sub, ok := claims.Sub.(string)
	if !ok || sub == "" || len(sub) > 255 || !utf8.ValidString(sub) {
		return "", false
	}
	for _, r := range sub {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return sub, true
}
