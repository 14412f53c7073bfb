package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/twerr"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// Sentinel errors for branching with errors.Is. Errors from the refresh and
// store packages keep their own sentinels (re-exported here where a client
// user needs them), so one errors.Is works whichever name is used.
var (
	// ErrInvalidConfig: the configuration is incomplete or contradictory;
	// the message says which field. It is the same value as
	// transport.ErrInvalidConfig and matches store's and refresh's
	// invalid-configuration errors too.
	ErrInvalidConfig = twerr.ErrInvalidConfig

	// ErrInsecureURL: an endpoint or API origin is not https (http is
	// accepted only for loopback hosts with Options.AllowInsecureLoopback).
	ErrInsecureURL = twerr.ErrInsecureURL

	// ErrUnsupportedTokenType: the server issued a token type other than Bearer.
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
	ErrStoreUnavailable = store.ErrUnavailable

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
	// section 3.3, RFC 9207).
	ErrIssuerMismatch = errors.New("client: issuer mismatch")

	// ErrAccessDenied: the user or the server refused the login.
	ErrAccessDenied = errors.New("client: access denied")

	// ErrLoginExpired: the login was not completed in time (the device code
	// expired, or the browser callback did not arrive before the timeout).
	ErrLoginExpired = errors.New("client: login expired before it was completed")

	// ErrCallbackRejected: the loopback callback that carried this login's
	// state was unusable (no code, a wrong iss, an error from the server);
	// the login ends. Requests with a wrong or missing state are answered
	// 400 and ignored: they do not end the login, so a forged request
	// cannot abort it (nor log the user in as someone else).
	ErrCallbackRejected = errors.New("client: login callback rejected")
)

// EndpointError reports a failed call to an authorization-server endpoint.
// Endpoint is the URL without query or user info. It unwraps to the cause,
// which matches one of the sentinels.
type EndpointError struct {
	Endpoint string
	Status   int // HTTP status, 0 when there was no response
	Err      error
}

// Error describes the failure; it never contains a secret.
func (e *EndpointError) Error() string {
	var b strings.Builder
	b.WriteString("client: ")
	b.WriteString(e.Endpoint)
	var re *refresh.Error
	if e.Status != 0 && !(errors.As(e.Err, &re) && re.StatusCode != 0) {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *EndpointError) Unwrap() error { return e.Err }

// RateLimitError says the server asked to wait RetryAfter before trying
// again, longer than the retry budget allowed. It matches ErrRateLimited and
// ErrTemporarilyUnavailable.
type RateLimitError struct {
	Endpoint   string
	Status     int
	RetryAfter time.Duration // the server's hint; 0 if it gave none
	Code       string        // the OAuth error code of the answer, if any (temporarily_unavailable)
	Attempts   int
}

// Error describes the rate limit and the server's hint.
func (e *RateLimitError) Error() string {
	s := fmt.Sprintf("client: %s (HTTP %d): rate limited by the authorization server", e.Endpoint, e.Status)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf("; it asks to retry after %s", e.RetryAfter)
	}
	return s
}

// Is matches ErrRateLimited and ErrTemporarilyUnavailable.
func (e *RateLimitError) Is(target error) bool {
	return target == ErrRateLimited || target == ErrTemporarilyUnavailable
}

// LogoutError reports what Logout could not do. The local tokens are deleted
// even when revocation fails; NotRevoked names the tokens ("refresh token",
// "access token for https://api.example") the server may still honour.
type LogoutError struct {
	NotRevoked   []string
	LocalDeleted bool
	Err          error
}

// Error says what was not revoked and whether the local tokens are gone.
func (e *LogoutError) Error() string {
	var parts []string
	if len(e.NotRevoked) > 0 {
		parts = append(parts, "not revoked at the server: "+strings.Join(e.NotRevoked, ", "))
	}
	if e.LocalDeleted {
		parts = append(parts, "local tokens deleted")
	} else {
		parts = append(parts, "local tokens NOT deleted")
	}
	s := "client: logout incomplete: " + strings.Join(parts, "; ")
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the causes.
func (e *LogoutError) Unwrap() error { return e.Err }
