package client

import (
	"errors"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// AuthorizationError is the authorization server's refusal of a login:
// the error code of an authorization response (through the browser's
// redirect), of a device login, or of a pushed authorization request, for
// the codes a program may want to act on: access_denied, and those of
// OpenID Connect Core 1.0 section 3.1.2.6 (login_required,
// consent_required, interaction_required, account_selection_required),
// which a server answers to prompt=none when the user would have to act.
// It sits in the chain of the error Login returns, whose message names the
// operation; errors.Is matches it against ErrAccessDenied,
// ErrLoginRequired, ErrConsentRequired or ErrInteractionRequired:
//
//	err := c.Login(ctx, client.WithAuthParam("prompt", "none"))
//	if errors.Is(err, client.ErrInteractionRequired) {
//		err = c.Login(ctx) // the user signs in or consents
//	}
//
// Its fields came from the server (through the browser, which anyone on
// the machine can aim at the login listener): the description is cleared
// of secrets, bounded, and has every character a terminal could act on
// shown escaped, so both can be printed as they are.
type AuthorizationError struct {
	// Code is the OAuth error code, one of those above.
	Code string
	// Description is the server's error_description, sanitized; may be
	// empty.
	Description string
}

// authorizationCodes maps the error codes an AuthorizationError stands
// for to what they mean, in words, and to the sentinels they match.
var authorizationCodes = map[string]struct {
	what string
	is   []error
}{
	oauthwire.CodeAccessDenied:   {"access denied", []error{ErrAccessDenied}},
	"login_required":             {"the user must sign in at the authorization server", []error{ErrLoginRequired, ErrInteractionRequired}},
	"consent_required":           {"the user must consent at the authorization server", []error{ErrConsentRequired, ErrInteractionRequired}},
	"interaction_required":       {"the user must interact with the authorization server", []error{ErrInteractionRequired}},
	"account_selection_required": {"the user must choose an account at the authorization server", []error{ErrInteractionRequired}},
}

// newAuthorizationError returns the AuthorizationError of an error answer
// with code and description, or nil when code is none of those it stands
// for. The description is scrubbed of secrets (the client's own among
// them, should a server echo it) and made safe to print.
func newAuthorizationError(code, description string, secrets ...string) *AuthorizationError {
	if _, ok := authorizationCodes[code]; !ok {
		return nil
	}
	return &AuthorizationError{Code: code, Description: redact.Scrub(description, 200, secrets...)}
}

// Error says what the server wants, then its code and description:
// "the user must sign in at the authorization server: login_required: ...".
func (e *AuthorizationError) Error() string {
	what := "the authorization server refused the login"
	if k, ok := authorizationCodes[e.Code]; ok {
		what = k.what
	}
	s := what + ": " + redact.Terminal(redact.Truncate(e.Code, 64))
	if e.Description != "" {
		s += ": " + redact.Terminal(e.Description)
	}
	return s
}

// Is matches the sentinels of the code: ErrAccessDenied for access_denied,
// ErrLoginRequired and ErrConsentRequired for theirs, and
// ErrInteractionRequired for every code but access_denied.
func (e *AuthorizationError) Is(target error) bool {
	for _, s := range authorizationCodes[e.Code].is {
		if target == s {
			return true
		}
	}
	return false
}

// authorizationFailure is the failure of op for an authorization error
// answer: its message is the AuthorizationError's, and it matches the
// error's sentinels and, unless the answer is access_denied, also (for the
// browser's callback ErrCallbackRejected, which those answers matched
// before they had types of their own).
func authorizationFailure(op string, ae *AuthorizationError, also error) error {
	errs := []error{ae}
	if also != nil && ae.Code != oauthwire.CodeAccessDenied {
		errs = append(errs, also)
	}
	return failure(op, ae.Error(), errs...)
}

// classifyAuthz is classify for an endpoint that answers authorization
// requests (the PAR endpoint, the device authorization endpoint): an error
// answer whose code has an AuthorizationError gets it in its chain too.
func (g *grant) classifyAuthz(op, endpoint string, status int, err error) error {
	out := g.classify(op, endpoint, status, err)
	var oe *oauthwire.Error
	var ee *EndpointError
	if errors.As(err, &oe) && errors.As(out, &ee) {
		if ae := newAuthorizationError(oe.Code, oe.Description, g.cfg.ClientSecret); ae != nil {
			ee.Err = &classified{err: ee.Err, class: ae}
		}
	}
	return out
}
