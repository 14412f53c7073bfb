package refresh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/twerr"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	mine := &Error{Code: "invalid_grant", kind: ErrReauthRequired}
	for _, tc := range []struct {
		name      string
		in        error
		want      error // sentinel, or nil for none
		code      string
		status    int
		temporary bool
		retrieve  bool // errors.As *oauth2.RetrieveError
	}{
		{"invalid_grant", retrieveErr(400, "invalid_grant", ""), ErrReauthRequired, "invalid_grant", 400, false, true},
		{"invalid_token (refresh token)", retrieveErr(401, "invalid_token", ""), ErrReauthRequired, "invalid_token", 401, false, true},
		{"invalid_client", retrieveErr(401, "invalid_client", ""), ErrClientRejected, "invalid_client", 401, false, true},
		{"unauthorized_client", retrieveErr(400, "unauthorized_client", ""), ErrClientRejected, "unauthorized_client", 400, false, true},
		{"unsupported_grant_type", retrieveErr(400, "unsupported_grant_type", ""), ErrClientRejected, "unsupported_grant_type", 400, false, true},
		{"401 without a code", retrieveErr(401, "", "nope"), ErrClientRejected, "", 401, false, true},
		{"temporarily_unavailable", retrieveErr(400, "temporarily_unavailable", ""), ErrTemporarilyUnavailable, "temporarily_unavailable", 400, true, true},
		{"503 html page", retrieveErr(503, "", "<html>"+strings.Repeat("x", 1<<20)+"</html>"), ErrTemporarilyUnavailable, "", 503, true, true},
		{"429", retrieveErr(429, "", ""), ErrTemporarilyUnavailable, "", 429, true, true},
		{"code wins over status", retrieveErr(503, "invalid_grant", ""), ErrReauthRequired, "invalid_grant", 503, false, true},
		{"OAuthError() carrier", &wireErr{400, "invalid_grant", "expired"}, ErrReauthRequired, "invalid_grant", 400, false, false},
		{"OAuthError() 502", fmt.Errorf("wrapped: %w", &wireErr{502, "", ""}), ErrTemporarilyUnavailable, "", 502, true, false},
		{"net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, ErrNetwork, "", 0, true, false},
		{"url.Error", &url.Error{Op: "Post", URL: "https://as.example/token", Err: errors.New("boom")}, ErrNetwork, "", 0, true, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ErrNetwork, "", 0, true, false},
		{"sentinel kept", fmt.Errorf("grant: %w", ErrReauthRequired), ErrReauthRequired, "", 0, false, false},
		{"twerr unsupported token type", twerr.ErrUnsupportedTokenType, ErrUnsupportedTokenType, "", 0, false, false},
		{"unknown", errors.New("something odd"), nil, "", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tc.in)
			for _, k := range kinds {
				if errors.Is(got, k) != (k == tc.want) {
					t.Errorf("errors.Is(%v) = %v, want %v", k, errors.Is(got, k), k == tc.want)
				}
			}
			var e *Error
			if !errors.As(got, &e) {
				t.Fatalf("errors.As(*Error) = false for %T", got)
			}
			if e.Code != tc.code || e.StatusCode != tc.status || e.Temporary() != tc.temporary {
				t.Errorf("Code %q Status %d Temporary %v, want %q %d %v", e.Code, e.StatusCode, e.Temporary(), tc.code, tc.status, tc.temporary)
			}
			if !errors.Is(got, tc.in) {
				t.Errorf("the cause is not reachable with errors.Is")
			}
			var re *oauth2.RetrieveError
			if errors.As(got, &re) != tc.retrieve {
				t.Errorf("errors.As(*oauth2.RetrieveError) = %v, want %v", !tc.retrieve, tc.retrieve)
			}
			msg := got.Error()
			if len(msg) > maxErrorLen || !strings.HasPrefix(msg, "refresh: ") {
				t.Errorf("message (%d bytes) = %.80q..., want <= %d bytes starting with refresh:", len(msg), msg, maxErrorLen)
			}
		})
	}
	t.Run("an *Error is kept", func(t *testing.T) {
		if got := classify(mine); got != mine {
			t.Fatalf("classify(*Error) = %v, want the same value", got)
		}
	})
}

// Messages start with "refresh: ", name what failed once and never repeat
// the text of a sentinel the cause already carries; errors.Is and
// errors.As still reach the sentinel and the cause.
func TestErrorMessagesNameTheFailureOnce(t *testing.T) {
	t.Parallel()
	notLoggedIn := fmt.Errorf("%w: not logged in (no refresh token); call Login", ErrReauthRequired)
	odd := errors.New("something odd")
	fail := func(err error) Upstream {
		return UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return nil, err })
	}
	viaToken := func(up Upstream) error {
		c := mustNew(t, up)
		defer c.Close()
		_, err := c.Token(t.Context())
		return err
	}
	viaExchange := func(err error) error {
		st := newMemStore()
		c := mustNew(t, fail(odd), func(o *Options) { o.Persister = st })
		defer c.Close()
		st.put(c.Key(), &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)})
		return c.Exchange(t.Context(), func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return nil, err })
	}
	viaSet := func() error {
		st := newMemStore()
		st.failSaves = 100
		c := mustNew(t, fail(odd), func(o *Options) { o.Persister = st })
		defer c.Close()
		return c.Set(t.Context(), &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)})
	}
	viaLoad := func() error {
		st := newFaultStore(newMemStore())
		st.failLoads = 100
		c := mustNew(t, fail(odd), func(o *Options) { o.Persister = st })
		defer c.Close()
		_, err := c.Token(t.Context())
		return err
	}
	for _, tc := range []struct {
		name  string
		err   error
		want  string
		is    []error // errors.Is must hold for each
		cause error   // errors.Is(err, cause) must hold too
	}{
		{"a cause that starts with the sentinel", viaToken(fail(notLoggedIn)),
			"refresh: re-authentication required: not logged in (no refresh token); call Login", []error{ErrReauthRequired}, notLoggedIn},
		{"a cause that ends with the sentinel", classify(fmt.Errorf("grant: %w", ErrReauthRequired)),
			"refresh: re-authentication required: grant", []error{ErrReauthRequired}, nil},
		{"the sentinel itself", classify(ErrNetwork), "refresh: network error", []error{ErrNetwork}, nil},
		{"another package's sentinel", classify(fmt.Errorf("client: %w", twerr.ErrUnsupportedTokenType)),
			"refresh: unsupported token type: client", []error{ErrUnsupportedTokenType}, nil},
		{"an OAuth error", classify(&wireErr{400, "invalid_grant", "expired"}),
			"refresh: re-authentication required: invalid_grant (expired) [HTTP 400]", []error{ErrReauthRequired}, nil},
		{"an unknown failure of a refresh", viaToken(fail(odd)), "refresh: token refresh failed: something odd", nil, odd},
		{"an unknown failure of an x/oauth2 source", viaToken(FromTokenSource(tsFunc(func() (*oauth2.Token, error) { return nil, odd }))),
			"refresh: token refresh failed: something odd", nil, odd},
		{"an unknown failure of an Exchange function", viaExchange(odd), "refresh: the Exchange function failed: something odd", nil, odd},
		{"an unknown failure of a grant", Classify(odd), "refresh: token request failed: something odd", nil, odd},
		{"a failed save", viaSet(), "refresh: saving the token: memstore: disk full", []error{ErrPersistFailed}, errDiskFull},
		{"a failed load", viaLoad(), "refresh: loading the stored token: faultstore: keychain did not reply", nil, errStoreRead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || tc.err.Error() != tc.want {
				t.Fatalf("message %q, want %q", tc.err, tc.want)
			}
			if n := strings.Count(tc.want, "refresh: "); n != 1 {
				t.Fatalf("%q names refresh %d times", tc.want, n)
			}
			var e *Error
			if !errors.As(tc.err, &e) {
				t.Fatalf("errors.As(*Error) = false for %T", tc.err)
			}
			for _, k := range tc.is {
				if !errors.Is(tc.err, k) {
					t.Fatalf("errors.Is(%v) = false", k)
				}
			}
			if tc.cause != nil && !errors.Is(tc.err, tc.cause) {
				t.Fatal("the cause is not reachable with errors.Is")
			}
		})
	}
}

// Server text in an error (an error_description from an x/oauth2 grant or
// any Upstream) is escaped for terminals: no C1 control, no bidi override
// reaches the caller's screen or log.
func TestErrorTextIsTerminalSafe(t *testing.T) {
	t.Parallel()
	err := Classify(&oauth2.RetrieveError{ErrorCode: "invalid_grant", ErrorDescription: "revoked \u009b2J\u202etxt.exe \x1b]8;;https://evil\x07"})
	if msg := err.Error(); strings.ContainsAny(msg, "\u009b\u202e\x1b\x07") {
		t.Fatalf("control characters survive in %q", msg)
	}
	var e *Error
	if !errors.As(err, &e) || strings.ContainsAny(e.Description, "\u009b\u202e\x1b\x07") {
		t.Fatalf("Description %q keeps control characters", e.Description)
	}
}
