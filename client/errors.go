package client

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/twerr"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

// Sentinel errors for branching with errors.Is. Errors from the refresh and
// store packages keep their own sentinels (re-exported here where a client
// user needs them), so one errors.Is works whichever name is used. The
// errors the client returns wrap them; their messages name the operation
// that failed ("client: discovery: ...", see [EndpointError]) and never
// repeat a sentinel's text.
var (
	// ErrInvalidConfig: the configuration is incomplete or contradictory;
	// the message says which field. It is the same value as
	// transport.ErrInvalidConfig and matches store's and refresh's
	// invalid-configuration errors too.
	ErrInvalidConfig = twerr.ErrInvalidConfig

	// ErrInsecureURL: an endpoint or API origin is not https (http is
	// accepted only for loopback hosts with Options.AllowInsecureLoopback).
	ErrInsecureURL = twerr.ErrInsecureURL

	// ErrUnsupportedTokenType: the server issued a token type this client
	// does not accept: other than Bearer, or, with Options.DPoP, other than
	// DPoP (a Bearer answer means the server did not bind the token to the
	// key; Options.DPoPAllowDowngrade accepts it).
	ErrUnsupportedTokenType = twerr.ErrUnsupportedTokenType

	// ErrReauthRequired: there is no usable refresh token (never logged in,
	// logged out, refresh token expired or revoked); call Login.
	ErrReauthRequired = refresh.ErrReauthRequired

	// ErrClientRejected: the server rejected the client itself
	// (invalid_client, unauthorized_client): fix the registration or config.
	ErrClientRejected = refresh.ErrClientRejected

	// ErrTemporarilyUnavailable: the server answered 5xx, 429 or
	// temporarily_unavailable; retry later.
	ErrTemporarilyUnavailable = refresh.ErrTemporarilyUnavailable

	// ErrNetwork: the server could not be reached or did not answer.
	ErrNetwork = refresh.ErrNetwork

	// ErrTokenRejected: an API rejected an access token issued moments
	// before, after an earlier rejection: the token is probably requested
	// for another audience or resource (Options.Resources, Scopes) than the
	// API expects. Reported with EventTokenRejected; refreshes forced by
	// rejections are then rate-limited, so such an API cannot drive the
	// token endpoint.
	ErrTokenRejected = refresh.ErrTokenRejected

	// ErrStoreUnavailable: the configured token store (by default the OS
	// keychain) cannot be used; the message names the opt-in alternatives.
	// It does not match a locked keychain: see ErrStoreLocked.
	ErrStoreUnavailable = store.ErrUnavailable

	// ErrStoreLocked: the OS keychain is there but a person must act
	// before tokens can be kept in it: its keyring is locked (unlock it),
	// or there is no keyring yet (create one); the message says which and
	// how, and names the opt-in alternatives. It is store.ErrLocked. New
	// reports it for a locked Secret Service keyring, and Login before it
	// starts a login whose tokens could not be kept; it is never a reason
	// to store tokens elsewhere without being asked.
	ErrStoreLocked = store.ErrLocked

	// ErrOriginNotAllowed: a request went to an origin outside its token's
	// while Options.RejectOtherOrigins is set; it was not sent. It is
	// transport.ErrOriginNotAllowed.
	ErrOriginNotAllowed = transport.ErrOriginNotAllowed

	// ErrTokenEndpointTimeout: an authorization-server endpoint did not
	// answer within Options.HTTP.Timeout. It also matches ErrNetwork.
	ErrTokenEndpointTimeout = errors.New("client: authorization server did not answer in time")

	// ErrRateLimited: the server asked to slow down for longer than the retry
	// budget allows. The *RateLimitError carries the server's hint. It also
	// matches ErrTemporarilyUnavailable.
	ErrRateLimited = errors.New("client: rate limited by the authorization server")

	// ErrBadResponse: the server's answer was not a valid OAuth response
	// (malformed JSON, no access_token, a redirect, an oversized body).
	ErrBadResponse = errors.New("client: invalid response from the authorization server")

	// ErrDiscovery: the issuer's discovery document (RFC 8414 or OpenID
	// Connect) could not be fetched or used; check Options.Issuer. The
	// cause is wrapped too: a network failure also matches ErrNetwork, a
	// 5xx or 429 ErrTemporarilyUnavailable, a mismatched issuer
	// ErrIssuerMismatch, an unusable document ErrBadResponse.
	ErrDiscovery = errors.New("client: discovery failed")

	// ErrIssuerMismatch: the discovery document or the authorization
	// response names a different issuer than the one configured (RFC 8414
	// section 3.3, RFC 9207): the user may have been sent to another
	// server, so it is never ignored.
	ErrIssuerMismatch = errors.New("client: issuer mismatch")

	// ErrInvalidScope: the server refused the requested scope (invalid_scope,
	// RFC 6749 sections 4.1.2.1 and 5.2: in the browser's callback or a
	// token response): check Options.Scopes against what the client is
	// registered for. From the token endpoint it also matches
	// ErrClientRejected, from the callback ErrCallbackRejected.
	ErrInvalidScope = errors.New("client: invalid scope")

	// ErrInvalidTarget: the server refused the requested resource indicator
	// (invalid_target, RFC 8707 section 2): check Options.Resources or the
	// resource given to ForResource. Like ErrInvalidScope it also matches
	// ErrClientRejected or ErrCallbackRejected.
	ErrInvalidTarget = errors.New("client: invalid target (resource)")

	// ErrAccessDenied: the user or the server refused the login
	// (access_denied). The [*AuthorizationError] in the chain has the
	// server's description.
	ErrAccessDenied = errors.New("client: access denied")

	// ErrInteractionRequired: the authorization server needs the user to
	// act (sign in, consent, pick an account) and the login asked it not
	// to (prompt=none): interaction_required, and every more precise
	// answer, login_required and consent_required included (OpenID
	// Connect Core 1.0 section 3.1.2.6). Log in again without prompt=none.
	ErrInteractionRequired = errors.New("client: the user must interact with the authorization server")

	// ErrLoginRequired: the user must sign in at the authorization server
	// (login_required, typically for prompt=none without a session there).
	// It also matches ErrInteractionRequired.
	ErrLoginRequired = errors.New("client: the user must sign in")

	// ErrConsentRequired: the user must consent at the authorization
	// server (consent_required). It also matches ErrInteractionRequired.
	ErrConsentRequired = errors.New("client: the user must consent")

	// ErrLoginExpired: the login was not completed in time (the device code
	// expired, or the browser callback did not arrive before the timeout).
	ErrLoginExpired = errors.New("client: login expired before it was completed")

	// ErrCallbackRejected: the loopback callback that carried this login's
	// state was unusable (no code, a wrong iss, an error from the server);
	// the login ends. Requests with a wrong or missing state are answered
	// 400 and ignored: they do not end the login, so a forged request
	// cannot abort it (nor log the user in as someone else).
	ErrCallbackRejected = errors.New("client: login callback rejected")

	// ErrDPoPAlgorithm: the DPoP key's algorithm (Options.DPoPKey,
	// Options.DPoPAlg) is not among those the server's discovery document
	// lists in dpop_signing_alg_values_supported. It comes before any
	// token request, together with ErrInvalidConfig: from New, or, when the
	// server could not be reached then, from the first operation that
	// fetches the discovery document.
	ErrDPoPAlgorithm = errors.New("client: the server does not accept the DPoP key's algorithm")

	// ErrInvalidDPoPProof: a server refused a DPoP proof: a resource server
	// (401 with error="invalid_dpop_proof", RFC 9449 section 7.1) or the
	// token endpoint (400 invalid_dpop_proof, as an *EndpointError; also
	// when DPoP is off and the server requires it, whose message then says
	// to set Options.DPoP). The request is not resent (the same key would
	// be refused again), except once at an API whose Date shows that the
	// proof's time was off.
	ErrInvalidDPoPProof = errors.New("client: the server refused the DPoP proof")
)

// Operations, as error messages name them: "client: <operation>: <what>".
// Token requests are named by their grant type (see opToken).
const (
	opDiscovery  = "discovery"
	opDeviceAuth = "device authorization"
	opRevocation = "revocation"
	opPAR        = "pushed authorization request"
	opLogin      = "login"
	opLogout     = "logout"
	opStatus     = "status"
	opConfig     = "invalid configuration"
)

// opToken names a token request by its grant_type: "token request
// (refresh_token)", "token request (device_code)".
func opToken(grantType string) string {
	if grantType == oauthwire.GrantTypeDeviceCode {
		grantType = "device_code"
	}
	return "token request (" + grantType + ")"
}

// EndpointError reports a failed call to an authorization-server endpoint.
// Op names the operation ("discovery", "device authorization",
// "revocation", "token request (refresh_token)", "token request
// (client_credentials)", ...); Endpoint is the URL without query or user
// info. It unwraps to the cause, which matches one of the sentinels. The
// message names the operation, then what went wrong:
//
//	client: token request (refresh_token): re-authentication required: https://as.example/token answered invalid_grant (HTTP 400): Token revoked
//	client: discovery: https://as.example/.well-known/oauth-authorization-server answered HTTP 404: no discovery document at this URL
//
// Text from the server in it is sanitized: no secret, no character a
// terminal could act on (those show escaped, as \u202e), a bounded length.
type EndpointError struct {
	Op       string
	Endpoint string
	Status   int // HTTP status, 0 when there was no response
	Err      error

	// hint, when set, ends the message with what to check (the client
	// authentication used when the server rejected the client).
	hint string
}

// Error describes the failure; it never contains a secret and is safe to
// print on a terminal as it is.
func (e *EndpointError) Error() string { return message(e.Op, e.detail()) }

// detail is the message without "client: <operation>: ", for messages that
// list several endpoints' failures under one operation.
func (e *EndpointError) detail() string {
	var b strings.Builder
	var oe *oauthwire.Error
	answered := errors.As(e.Err, &oe)
	if answered {
		// The server's answer, classified: what it means first.
		if k := kindText(e.Err); k != "" {
			b.WriteString(k)
			b.WriteString(": ")
		}
	}
	b.WriteString(orUnknown(e.Endpoint))
	switch {
	case answered:
		b.WriteString(" answered ")
		b.WriteString(oe.Error())
	case e.Status != 0:
		fmt.Fprintf(&b, " answered HTTP %d", e.Status)
	}
	if !answered && e.Err != nil {
		b.WriteString(": ")
		b.WriteString(plain(e.Err))
	}
	if e.hint != "" {
		b.WriteString("; ")
		b.WriteString(e.hint)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *EndpointError) Unwrap() error { return e.Err }

// Is matches ErrInvalidScope, ErrInvalidTarget and ErrInvalidDPoPProof by
// the server's error code, which the token cache's classes
// (ErrClientRejected) do not tell apart.
func (e *EndpointError) Is(target error) bool {
	switch target {
	case ErrInvalidScope:
		return oauthCode(e.Err) == oauthwire.CodeInvalidScope
	case ErrInvalidTarget:
		return oauthCode(e.Err) == oauthwire.CodeInvalidTarget
	case ErrInvalidDPoPProof:
		return oauthCode(e.Err) == dpop.CodeInvalidProof
	}
	return false
}

// RetryAfterHint returns the Retry-After the endpoint sent with its answer
// (0 when it sent none). The token cache looks for this method in a failed
// refresh's error and waits as long before its next attempt (capped, see
// refresh.Upstream). A 429, and a 503 with Retry-After, come as a
// [*RateLimitError] instead.
func (e *EndpointError) RetryAfterHint() time.Duration {
	var oe *oauthwire.Error
	if errors.As(e.Err, &oe) {
		return oe.RetryAfter
	}
	return 0
}

// RateLimitError says the server asked to wait RetryAfter before trying
// again, longer than the retry budget allowed. It matches ErrRateLimited and
// ErrTemporarilyUnavailable. Op names the operation, as in [EndpointError].
type RateLimitError struct {
	Op         string
	Endpoint   string
	Status     int
	RetryAfter time.Duration // the server's hint; 0 if it gave none
	Code       string        // the OAuth error code of the answer, if any (temporarily_unavailable)
	Attempts   int
}

// Error describes the rate limit and the server's hint.
func (e *RateLimitError) Error() string {
	s := fmt.Sprintf("%s answered HTTP %d: rate limited", orUnknown(e.Endpoint), e.Status)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf("; it asks to retry after %s", e.RetryAfter)
	}
	return message(e.Op, s)
}

// Is matches ErrRateLimited and ErrTemporarilyUnavailable.
func (e *RateLimitError) Is(target error) bool {
	return target == ErrRateLimited || target == ErrTemporarilyUnavailable
}

// RetryAfterHint returns RetryAfter, the server's hint. The token cache
// looks for this method in a failed refresh's error and waits as long
// before its next attempt, at most refresh.Options.MaxRetryAfter (see
// refresh.Upstream).
func (e *RateLimitError) RetryAfterHint() time.Duration { return e.RetryAfter }

// opError is the failure of an operation that is not an endpoint's answer
// (a login that expired, a rejected callback, no refresh token): its
// message is "client: <op>: <msg>", and it matches every error in errs,
// whose own messages it does not repeat.
type opError struct {
	op   string
	msg  string
	errs []error
}

// Error is "client: <op>: <msg>".
func (e *opError) Error() string { return message(e.op, e.msg) }

// Unwrap returns the errors it matches.
func (e *opError) Unwrap() []error { return e.errs }

// failure returns an *opError: op failed as msg says, and the error matches
// errs.
func failure(op, msg string, errs ...error) error {
	return &opError{op: op, msg: msg, errs: errs}
}

// detailError is the cause inside an *EndpointError: msg says what went
// wrong, and it matches every error in errs, whose messages it does not
// repeat.
type detailError struct {
	msg  string
	errs []error
}

// Error says what went wrong.
func (e *detailError) Error() string { return e.msg }

// Unwrap returns the errors it matches.
func (e *detailError) Unwrap() []error { return e.errs }

// badResponse marks err, which says what was wrong with an answer, as
// ErrBadResponse without adding the sentinel's words to its message.
func badResponse(err error) error {
	return &detailError{msg: plain(err), errs: []error{ErrBadResponse, err}}
}

// inOp names op as the operation of err, an error from an endpoint call or
// from a package the client uses. An error that already holds a client
// error (an *EndpointError, *RateLimitError or an operation's failure) is
// returned as it is, its endpoint error given op when it had no operation
// yet; an error of another package is wrapped under op, its message
// cleared of package prefixes.
func inOp(op string, err error) error {
	if err == nil {
		return nil
	}
	var ee *EndpointError
	var rl *RateLimitError
	var oe *opError
	var le *LogoutError
	switch {
	case errors.As(err, &ee):
		if ee.Op == "" { // only a fresh error, from the call just made
			ee.Op = op
		}
		return err
	case errors.As(err, &rl):
		if rl.Op == "" {
			rl.Op = op
		}
		return err
	case errors.As(err, &oe), errors.As(err, &le):
		return err
	}
	return failure(op, plain(err), err)
}

// forCache makes err, the failure of a token request made for a token
// cache, one the cache passes on as it is. The cache classifies every
// error it gets and rewrites those that carry no *refresh.Error with its
// own prefix ("refresh: network error: client: ..."); err keeps its
// message and gains the classification, so errors.Is and errors.As work
// as before.
func forCache(err error) error {
	var re *refresh.Error
	if err == nil || errors.As(err, &re) {
		return err
	}
	return &classified{err: err, class: refresh.Classify(err)}
}

// classified is an error with the token cache's classification attached.
type classified struct {
	err   error
	class error
}

// Error is the message of the error classified.
func (c *classified) Error() string { return c.err.Error() }

// Unwrap returns the error and its classification.
func (c *classified) Unwrap() []error { return []error{c.err, c.class} }

// message builds a client error message: "client: ", the operation, and
// what went wrong, with every character a terminal could act on shown
// escaped, so that it can be printed as it is.
func message(op, what string) string {
	s := "client: "
	if op != "" {
		s += op + ": "
	}
	return redact.Terminal(s + what)
}

// orUnknown returns endpoint, for a message: cut to a bounded length (a
// discovered endpoint's URL comes from the server), or a phrase when it is
// unknown.
func orUnknown(endpoint string) string {
	if endpoint == "" {
		return "the authorization server"
	}
	return redact.Truncate(endpoint, 256)
}

// kinds are the sentinels an endpoint's answer is classified as, in the
// order their names are looked for.
var kinds = []error{ErrReauthRequired, ErrClientRejected, ErrTemporarilyUnavailable, ErrNetwork, ErrUnsupportedTokenType}

// kindText names the classification of err in words ("re-authentication
// required"), or "" when it has none.
func kindText(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return unprefixed(k.Error())
		}
	}
	return ""
}

// plain returns err's message for use inside another message: without
// the package prefixes of the errors it wraps ("refresh: ", "client: "),
// without a phrase repeated by nested wrapping, and with joined errors on
// one line, separated by "; ".
func plain(err error) string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = unprefixed(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// prefixRe matches a package prefix at the start of a message or of a part
// of one.
var prefixRe = regexp.MustCompile(`(^|: |; |\()(?:client|refresh|oauthwire|tokenward): `)

// unprefixed removes package prefixes from msg and drops a part that
// repeats the one before it ("re-authentication required:
// re-authentication required: ...").
func unprefixed(msg string) string {
	for {
		m := prefixRe.ReplaceAllString(msg, "$1")
		if m == msg {
			break
		}
		msg = m
	}
	parts := strings.Split(msg, ": ")
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		if i > 0 && p == parts[i-1] {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}
