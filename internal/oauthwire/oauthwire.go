// Package oauthwire is tokenward's token-endpoint wire format: it parses what
// authorization servers send back (token responses, error responses,
// discovery documents, device authorization responses, Retry-After) and
// builds the few wire values a client sends (client authentication).
//
// Everything here treats its input as hostile. Bodies larger than [MaxBody]
// are refused; optional fields that fail to parse never make a usable
// response fail (a server that sends expires_in as "3599.5" still issued a
// good token, and throwing it away would strand the user); error values and
// their strings are short and sanitized, so that no secret from a response
// body reaches a log line or an error message, and nothing in them can act
// on a terminal. Messages name no package: they describe what was wrong
// with the answer, and the caller wraps them with the operation that got
// it.
//
// The flow for a token request is:
//
//	sent := time.Now()
//	resp, err := httpClient.Do(req)         // never follows redirects
//	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
//	tok, err := oauthwire.ParseTokenResponse(resp.StatusCode, resp.Header, body, sent)
//	var oe *oauthwire.Error
//	if errors.As(err, &oe) { ... oe.Code == "invalid_grant" ... }
//
// Most users will use client.New instead; this package is internal.
package oauthwire

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// MaxBody is the largest response body the parsers accept (1 MiB). Callers
// read with io.LimitReader(body, MaxBody+1) so that an oversized body is
// detected rather than silently truncated.
const MaxBody = 1 << 20

// MaxExpiresIn is the largest lifetime the parsers accept from expires_in,
// refresh_token_expires_in or a device authorization's expires_in. Larger
// values (a server sending 2^40, or 1e300) are clamped to it: the token is
// kept and treated as long-lived, and the refresh cache's own caps decide
// when it is refreshed.
const MaxExpiresIn = 365 * 24 * time.Hour

// Sentinel errors. They are wrapped with context; test with errors.Is. Their
// text names no package, since it reaches users inside the client's
// messages ("client: token request (refresh_token): ... malformed response
// body: ...").
var (
	// ErrBodyTooLarge: the response body is larger than MaxBody.
	ErrBodyTooLarge = errors.New("response body larger than 1 MiB")
	// ErrMissingAccessToken: a successful token response without a usable
	// access_token (absent, empty, not a string, or with control characters).
	ErrMissingAccessToken = errors.New("token response has no usable access_token")
	// ErrMalformedResponse: the body is neither a JSON object nor a
	// form-encoded response.
	ErrMalformedResponse = errors.New("malformed response body")
	// ErrUnexpectedContentType: the body did not parse and its content type is
	// neither JSON nor form encoding (an HTML login page, a proxy's error page).
	ErrUnexpectedContentType = errors.New("unexpected content type")
	// ErrIssuerMismatch: a discovery document names another issuer than the
	// one it was fetched for (RFC 8414 section 3.3, mix-up protection).
	ErrIssuerMismatch = errors.New("discovery document issuer mismatch")
	// ErrInvalidDiscovery: the discovery document is not a JSON object, or an
	// endpoint in it is not an absolute http(s) URL.
	ErrInvalidDiscovery = errors.New("invalid discovery document")
	// ErrInvalidDeviceResponse: a device authorization response lacks
	// device_code, user_code or a usable verification_uri.
	ErrInvalidDeviceResponse = errors.New("invalid device authorization response")
)

// JWTExpiry returns the exp claim of a JWT-shaped access token without
// verifying anything (see tokenx.JWTExpiry): a scheduling hint for tokens
// whose response had no usable expires_in.
func JWTExpiry(token string) (time.Time, bool) { return tokenx.JWTExpiry(token) }

// mediaType returns the lower-cased media type of the Content-Type header,
// without parameters ("" when absent or unparsable).
func mediaType(h http.Header) string {
	ct := h.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// Keep what is before the first ';' so "application/json;;" still counts.
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

func isJSONType(mt string) bool {
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func isFormType(mt string) bool {
	return mt == "application/x-www-form-urlencoded" || mt == "text/plain" || mt == ""
}

// ServerTime returns the time in the response's Date header, if it has a
// valid one. Clients compare it with their own clock to detect skew.
func ServerTime(h http.Header) (time.Time, bool) {
	v := h.Get("Date")
	if v == "" {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// ClockSkew estimates how far the server's clock is ahead of the local one
// (negative when behind) from the response's Date header, the moment the
// request was sent and the moment the response arrived. The Date header has
// one-second resolution, so the estimate is only good to about a second plus
// the round trip; ok is false without a usable Date header.
func ClockSkew(h http.Header, sent, received time.Time) (skew time.Duration, ok bool) {
	st, ok := ServerTime(h)
	if !ok {
		return 0, false
	}
	mid := sent.Add(received.Sub(sent) / 2)
	// Date is truncated to the second: add half a second to centre it.
	return st.Add(500 * time.Millisecond).Sub(mid), true
}
