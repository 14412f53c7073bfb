package refresh

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/twerr"
)

// Sentinel errors. Branch on them with [errors.Is]; the details of an
// authorization-server error are in an [*Error] (use [errors.As]).
var (
	// ErrReauthRequired: the grant can no longer produce tokens without the
	// user (invalid_grant, or invalid_token for the refresh token, or the
	// stored token was removed by another process). The dead token has been
	// removed from the Persister; log in again.
	ErrReauthRequired = errors.New("refresh: re-authentication required")

	// ErrClientRejected: the authorization server rejected the client itself
	// (invalid_client, unauthorized_client, unsupported_grant_type,
	// invalid_scope, invalid_target, invalid_request, or HTTP 401/403 without an error code).
	// Retrying will not help; fix the configuration.
	ErrClientRejected = errors.New("refresh: the authorization server rejected the client")

	// ErrTemporarilyUnavailable: the authorization server answered with
	// temporarily_unavailable, server_error, slow_down, HTTP 5xx, 408 or 429.
	// The cache retries with backoff.
	ErrTemporarilyUnavailable = errors.New("refresh: authorization server temporarily unavailable")

	// ErrNetwork: the token endpoint could not be reached or the exchange
	// did not complete (DNS, connection, TLS, reset, timeout).
	ErrNetwork = errors.New("refresh: network error")

	// ErrUnsupportedTokenType: the server issued a token_type that
	// Options.TokenTypes does not list (by default: other than Bearer, in
	// any case, or empty); the message names the type and the accepted
	// ones. It is the same value as twerr's, so errors.Is matches the
	// transport's and client's re-exports too.
	ErrUnsupportedTokenType = twerr.ErrUnsupportedTokenType

	// ErrPersistFailed: a new token could not be saved to the Persister (a
	// reduced set holding its refresh token may have been saved instead).
	// The cache keeps using it in memory and retries the save on the next
	// access, in the background; the failure is reported once through
	// [Options.OnEvent] and the logger.
	ErrPersistFailed = errors.New("refresh: saving the token failed")

	// ErrPossibleRotationLoss marks an [ErrReauthRequired] whose invalid_grant
	// followed a refresh that failed in transit: the server probably rotated
	// the refresh token and the response carrying the new one was lost.
	// Configure a rotation grace period on the server (10-30 s) and
	// [Options.RotationGrace] to survive this.
	ErrPossibleRotationLoss = errors.New("refresh: possible refresh token rotation loss")

	// ErrTokenRejected: a resource server rejected an access token that was
	// issued moments before, in answer to an earlier rejection, so a new
	// token is unlikely to help. The likely cause is an audience or
	// resource mismatch: the token is requested for another resource
	// indicator (or scope) than the API expects. Reported through
	// [EventTokenRejected]; refreshes forced by rejections are then
	// rate-limited ([Cache.Invalidate]).
	ErrTokenRejected = errors.New("refresh: access token rejected by the resource server")

	// ErrInvalidConfig: New was called with an unusable argument (an empty
	// key, a nil Upstream), or with options that differ from those of the
	// cache already open for the key. It is the same value as
	// client.ErrInvalidConfig and transport.ErrInvalidConfig.
	ErrInvalidConfig = twerr.ErrInvalidConfig

	// ErrClosed is returned by a [Cache] after [Cache.Close].
	ErrClosed = errors.New("refresh: cache closed")
)

// maxErrorLen bounds every error string this package produces, so that a
// server's huge error page cannot flood logs.
const maxErrorLen = 512

// kinds lists the sentinels that classify an error, in matching order.
var kinds = []error{ErrReauthRequired, ErrClientRejected, ErrTemporarilyUnavailable, ErrNetwork, ErrUnsupportedTokenType, ErrPersistFailed}

// Error describes a failure of the cache: a token request the
// authorization server (or the network) refused, or a store that failed.
// Its fields are safe to log: the
// description has been redacted and truncated. Err is the underlying cause
// (often an *oauth2.RetrieveError or a net error) and is returned by Unwrap;
// errors.Is(e, ErrReauthRequired) and the other sentinels match according
// to the classification of Code and StatusCode.
type Error struct {
	// StatusCode is the HTTP status of the token endpoint's answer, or 0.
	StatusCode int
	// Code is the RFC 6749 error code (invalid_grant, ...), or "".
	Code string
	// Description is the server's error_description, redacted and
	// truncated, or "".
	Description string
	// Err is the underlying cause, or nil.
	Err error

	kind         error  // the sentinel this error matches; nil derives it from Code/StatusCode
	rotationLoss bool   // invalid_grant after a refresh with the same refresh token failed in transit
	fromWire     bool   // StatusCode/Code/Description were read from Err: its message adds nothing
	failure      string // what failed, for an error that fits no sentinel; "" means "token request failed"
	msg          string // precomputed, sanitized message; "" computes it from the fields
}

// Error returns a message of at most 512 bytes that never contains a token.
func (e *Error) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return e.build(nil)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel this error is classified as
// (or ErrPossibleRotationLoss when that applies).
func (e *Error) Is(target error) bool {
	if target == nil {
		return false
	}
	if target == ErrPossibleRotationLoss {
		return e.rotationLoss
	}
	return target == e.Kind()
}

// Kind returns the sentinel this error is classified as ([ErrReauthRequired],
// [ErrClientRejected], ...), or nil when the failure fits none of them.
func (e *Error) Kind() error {
	if e.kind != nil {
		return e.kind
	}
	return kindOf(e.StatusCode, e.Code)
}

// Temporary reports whether retrying later may succeed: the server was
// temporarily unavailable (5xx, 408, 429, temporarily_unavailable) or the
// network failed.
func (e *Error) Temporary() bool {
	switch k := e.Kind(); {
	case k == ErrTemporarilyUnavailable, k == ErrNetwork:
		return true
	case k == nil:
		return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
	}
	return false
}

// build renders the message, removing the given secrets (exact matches)
// and anything internal/redact recognises, and bounds its length. It
// names what failed once: "refresh: " and the sentinel's text (or, for an
// error that fits none, what failed), then the server's code, description
// and status, then the cause's own words, without the sentinel's text a
// cause that wraps a sentinel already carries.
func (e *Error) build(secrets []string) string {
	var b strings.Builder
	b.WriteString("refresh: ")
	k := e.Kind()
	detail := ""
	if e.Err != nil && !isSentinel(e.Err) && !e.fromWire {
		detail = e.Err.Error()
		if k != nil {
			detail = without(detail, k.Error())
		}
	}
	more := e.Code != "" || e.Description != "" || e.StatusCode != 0 || e.rotationLoss || detail != ""
	switch {
	case k == nil && e.failure != "":
		b.WriteString(e.failure)
	case k == ErrPersistFailed && more:
		b.WriteString("saving the token") // "saving the token: <why>"
	default:
		b.WriteString(kindText(k))
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(" (")
		b.WriteString(e.Description)
		b.WriteString(")")
	}
	if e.StatusCode != 0 {
		b.WriteString(" [HTTP ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		b.WriteString("]")
	}
	if e.rotationLoss {
		b.WriteString(" (possible rotation loss: an earlier refresh with this refresh token failed in transit)")
	}
	if detail != "" {
		b.WriteString(": ")
		b.WriteString(detail)
	}
	return redact.Scrub(b.String(), maxErrorLen, secrets...)
}

// without returns msg, a cause's message, without the text of the
// sentinel it wraps (and the ": " that joined them), so that a message
// names the failure once: "refresh: re-authentication required: not logged
// in" for a cause that reads "refresh: re-authentication required: not
// logged in", "...: grant" for one that reads "grant: refresh:
// re-authentication required".
func without(msg, sentinel string) string {
	i := strings.Index(msg, sentinel)
	if i < 0 {
		return msg
	}
	before := strings.TrimSuffix(msg[:i], ": ")
	after := strings.TrimPrefix(msg[i+len(sentinel):], ": ")
	switch {
	case before == "":
		return after
	case after == "":
		return before
	}
	return before + ": " + after
}

func isSentinel(err error) bool {
	for _, k := range kinds {
		if err == k {
			return true
		}
	}
	return err == ErrPossibleRotationLoss || err == ErrClosed
}

func kindText(k error) string {
	switch k {
	case ErrReauthRequired:
		return "re-authentication required"
	case ErrClientRejected:
		return "the authorization server rejected the client"
	case ErrTemporarilyUnavailable:
		return "authorization server temporarily unavailable"
	case ErrNetwork:
		return "network error"
	case ErrUnsupportedTokenType:
		return "unsupported token type"
	case ErrPersistFailed:
		return "saving the token failed"
	}
	return "token request failed"
}

// kindOf maps an RFC 6749 error code and HTTP status to a sentinel. The code
// wins over the status.
func kindOf(status int, code string) error {
	switch code {
	case "invalid_grant", "invalid_token":
		return ErrReauthRequired
	case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope", "invalid_target", "invalid_request", "unauthorized":
		return ErrClientRejected
	case "temporarily_unavailable", "server_error", "slow_down":
		return ErrTemporarilyUnavailable
	}
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return ErrTemporarilyUnavailable
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ErrClientRejected
	}
	return nil
}

// oauthError is how errors from internal/oauthwire (and anyone else) expose
// an OAuth error response without refresh importing them.
type oauthError interface {
	OAuthError() (status int, code, description string)
}

// classify turns an error from a grant into this package's taxonomy, in
// the order documented in the package comment: an *Error is kept; an error
// that already matches one of the sentinels keeps its kind; an
// *oauth2.RetrieveError and an OAuthError() carrier are mapped by code and
// status; net errors and timeouts become ErrNetwork. secrets are removed
// from the message.
func classify(err error, secrets ...string) error {
	return classifyAs(err, "", secrets)
}

// classifyAs is classify for an error of the operation that failed: its
// message says so (failure, such as "token refresh failed") when the error
// fits none of the sentinels.
func classifyAs(err error, failure string, secrets []string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	out := &Error{Err: err, failure: failure}
	for _, k := range kinds {
		if errors.Is(err, k) {
			out.kind = k
			break
		}
	}
	if out.kind == nil {
		var re *oauth2.RetrieveError
		var oe oauthError
		switch {
		case errors.As(err, &re):
			if re.Response != nil {
				out.StatusCode = re.Response.StatusCode
			}
			out.Code = cleanCode(re.ErrorCode)
			out.Description = redact.Scrub(re.ErrorDescription, 200, secrets...)
			out.kind = kindOf(out.StatusCode, out.Code)
			out.fromWire = out.Code != "" || out.StatusCode != 0
		case errors.As(err, &oe):
			st, code, desc := oe.OAuthError()
			out.StatusCode = st
			out.Code = cleanCode(code)
			out.Description = redact.Scrub(desc, 200, secrets...)
			out.kind = kindOf(st, out.Code)
			out.fromWire = out.Code != "" || out.StatusCode != 0
		case isNetError(err):
			out.kind = ErrNetwork
		}
	}
	out.msg = out.build(secrets)
	return out
}

// cleanCode keeps an RFC 6749 error code only if it looks like one
// (%x20-21 / %x23-5B / %x5D-7E, short); anything else could be an echo of
// attacker- or secret-controlled text.
func cleanCode(c string) string {
	if len(c) > 64 {
		return "invalid_code"
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' {
			return "invalid_code"
		}
	}
	return redact.Scrub(c, 64)
}

// isNetError reports whether err is a transport-level failure.
func isNetError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// oauth2Error is what [TokenSource] returns for an *Error that does not
// already wrap an *oauth2.RetrieveError, so code written for x/oauth2 can
// still use errors.As(err, **oauth2.RetrieveError).
type oauth2Error struct {
	err error
	re  *oauth2.RetrieveError
}

func (e *oauth2Error) Error() string   { return e.err.Error() }
func (e *oauth2Error) Unwrap() []error { return []error{e.err, e.re} }

// toOAuth2Error translates an error from this package for x/oauth2 callers.
func toOAuth2Error(err error) error {
	var re *oauth2.RetrieveError
	if err == nil || errors.As(err, &re) {
		return err
	}
	var e *Error
	if !errors.As(err, &e) || (e.Code == "" && e.StatusCode == 0) {
		return err
	}
	st := e.StatusCode
	if st == 0 {
		st = http.StatusBadRequest
	}
	return &oauth2Error{err: err, re: &oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: st, Status: strconv.Itoa(st) + " " + http.StatusText(st)},
		ErrorCode:        e.Code,
		ErrorDescription: e.Description,
	}}
}

// Classify maps an error from a grant into this package's taxonomy, the way
// the cache classifies Upstream errors: the result is an *Error that matches
// one of the sentinels (or none, for an unknown failure) and unwraps to err.
// Grant implementations (such as the client package's login flows) use it to
// report their own failures with the same kinds. Classify(nil) is nil.
func Classify(err error) error { return classify(err) }
