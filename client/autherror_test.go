package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
)

// authzCases are the authorization error codes with types, and the
// sentinels each must and must not match.
var authzCases = []struct {
	code  string
	is    []error
	isNot []error
}{
	{"access_denied", []error{ErrAccessDenied}, []error{ErrInteractionRequired, ErrLoginRequired, ErrConsentRequired, ErrCallbackRejected}},
	{"login_required", []error{ErrLoginRequired, ErrInteractionRequired}, []error{ErrAccessDenied, ErrConsentRequired}},
	{"consent_required", []error{ErrConsentRequired, ErrInteractionRequired}, []error{ErrAccessDenied, ErrLoginRequired}},
	{"interaction_required", []error{ErrInteractionRequired}, []error{ErrAccessDenied, ErrLoginRequired, ErrConsentRequired}},
	{"account_selection_required", []error{ErrInteractionRequired}, []error{ErrAccessDenied, ErrLoginRequired, ErrConsentRequired}},
}

// checkAuthzError checks err against one case: its sentinels, an
// *AuthorizationError with the code, and a message naming the operation.
func checkAuthzError(t *testing.T, err error, code, prefix string, is, isNot []error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", code)
	}
	checkMessage(t, err.Error(), prefix)
	var ae *AuthorizationError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Errorf("%s: %v holds no *AuthorizationError with its code", code, err)
	}
	for _, target := range is {
		if !errors.Is(err, target) {
			t.Errorf("%s: %v does not match %v", code, err, target)
		}
	}
	for _, target := range isNot {
		if errors.Is(err, target) {
			t.Errorf("%s: %v matches %v", code, err, target)
		}
	}
}

// An authorization response with one of the typed codes fails the browser
// login with its sentinels and an *AuthorizationError. Other errors of
// the callback still match ErrCallbackRejected, as access_denied alone
// does not.
func TestAuthorizationErrorsBrowser(t *testing.T) {
	t.Parallel()
	for _, tc := range authzCases {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oauthtest.Config{AuthorizeError: tc.code})
			is := tc.is
			if tc.code != "access_denied" {
				is = append(is, ErrCallbackRejected)
			}
			checkAuthzError(t, f.client(t).Login(t.Context()), tc.code, "client: login: ", is, tc.isNot)
		})
	}
	f := newFixture(t, oauthtest.Config{AuthorizeError: "invalid_scope"})
	err := f.client(t).Login(t.Context())
	var ae *AuthorizationError
	if !errors.Is(err, ErrCallbackRejected) || errors.As(err, &ae) || errors.Is(err, ErrInteractionRequired) {
		t.Errorf("invalid_scope: %v", err)
	}
}

// The typical case: prompt=none while the user has no session at the
// server is answered login_required; the program then logs in without it.
func TestPromptNoneLoginRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{NoSession: true})
	c := f.client(t)
	err := c.Login(t.Context(), WithAuthParam("prompt", "none"))
	checkAuthzError(t, err, "login_required", "client: login: ", []error{ErrLoginRequired, ErrInteractionRequired}, []error{ErrAccessDenied})
	if errors.Is(err, ErrInteractionRequired) {
		login(t, c)
	}
}

// A pushed login whose authorization request is refused gets the same
// types.
func TestAuthorizationErrorsPushed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{RequirePAR: true, NoSession: true})
	err := f.client(t).Login(t.Context(), WithAuthParam("prompt", "none"))
	checkAuthzError(t, err, "login_required", "client: login: ", []error{ErrLoginRequired, ErrInteractionRequired}, nil)
	if f.as.Stats().PushedRequests != 1 {
		t.Error("the login was not pushed")
	}
}

// A device login answered with a typed code (a denial, or an OpenID
// Connect interaction code) fails with its sentinels; the server's
// description comes out scrubbed of the client secret and safe for a
// terminal.
func TestAuthorizationErrorsDevice(t *testing.T) {
	t.Parallel()
	for _, tc := range authzCases {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			secret := canary.New("secret")
			f := newFixture(t, oauthtest.Config{DeviceInterval: time.Second})
			registerLoginClient(t, f, "tv", secret, oauthtest.AuthClientSecretBasic)
			f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantDeviceCode,
				Status: 400, Code: tc.code, Description: "see \x1b]8;;https://evil.example\x07here\u202e " + secret})
			c := f.client(t, func(o *Options) { o.ClientID, o.ClientSecret, o.DevicePrompt = "tv", secret, waitForCancel })
			err := c.Login(t.Context(), WithDevice())
			checkAuthzError(t, err, tc.code, "client: login: ", tc.is, tc.isNot)
			var ae *AuthorizationError
			desc := ""
			if errors.As(err, &ae) {
				desc = ae.Description
				if redact.Terminal(desc) != desc || strings.Contains(desc, "\u202e") {
					t.Errorf("Description %q is not safe to print", desc)
				}
			}
			if len(canary.Find(err.Error()+desc+f.log.String(), secret)) > 0 {
				t.Error("the client secret leaked")
			}
		})
	}
}

// The device authorization endpoint's own refusal (here access_denied, as
// a server answers a device login it does not allow) is an *EndpointError
// of that operation with the *AuthorizationError in its chain.
func TestAuthorizationErrorDeviceAuthorization(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointDeviceAuthorization, Status: 400, Code: "access_denied"})
	err := f.client(t, func(o *Options) { o.DevicePrompt = waitForCancel }).Login(t.Context(), WithDevice())
	checkAuthzError(t, err, "access_denied", "client: device authorization: ", []error{ErrAccessDenied}, []error{ErrInteractionRequired})
	if !isEndpointError(err) {
		t.Errorf("%v is not an *EndpointError", err)
	}
}
