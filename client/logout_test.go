package client

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// A server that declines to revoke access tokens (unsupported_token_type,
// common with JWT access tokens) while it revokes the refresh token is no
// logout failure: Logout succeeds and names the access token as not
// revocable, with its expiry.
func TestLogoutAccessTokenNotRevocable(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{RefuseAccessTokenRevocation: true})
	c := e.loggedIn(t)
	res, err := c.Logout(t.Context())
	if err != nil {
		t.Fatalf("Logout = %v, want success: the refresh token was revoked", err)
	}
	if !res.Found || !res.LocalDeleted || !slices.Equal(res.Revoked, []string{"refresh token"}) {
		t.Fatalf("result %+v, want the refresh token revoked and everything deleted", res)
	}
	if len(res.NotRevocable) != 1 || !strings.HasPrefix(res.NotRevocable[0], "access token (valid until ") {
		t.Fatalf("NotRevocable = %q, want the access token with its expiry", res.NotRevocable)
	}
	if n := e.as.Stats().FamilyRevocations; n != 1 {
		t.Fatalf("%d token families revoked, want 1", n)
	}
}

// A refresh token the server will not revoke is a failure, whatever the
// reason: it could mint new tokens.
func TestLogoutRefreshTokenNotRevoked(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.loggedIn(t)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointRevocation, Code: "unsupported_token_type", Times: 1})
	res, err := c.Logout(t.Context())
	var le *LogoutError
	if !errors.As(err, &le) || !slices.Contains(le.NotRevoked, "refresh token") || le.Result != res {
		t.Fatalf("Logout = %v, want a *LogoutError naming the refresh token", err)
	}
	if !res.LocalDeleted {
		t.Fatal("the login was not deleted locally")
	}
}

// With nothing stored, Logout claims nothing: no request, Found false.
func TestLogoutNothingStored(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.client(t)
	e.as.ResetStats()
	res, err := c.Logout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Found || len(res.Revoked) != 0 || !res.LocalDeleted {
		t.Fatalf("result %+v, want nothing found and nothing revoked", res)
	}
	if n := e.as.Stats().Requests[oauthtest.EndpointRevocation]; n != 0 {
		t.Fatalf("%d revocation requests with nothing stored", n)
	}
}

// Login(IfNeeded()) logs in only without a usable login; LoggedIn says
// which, from the store alone.
func TestLoginIfNeeded(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.client(t)
	if in, err := c.LoggedIn(t.Context()); err != nil || in {
		t.Fatalf("LoggedIn before any login = %v, %v", in, err)
	}
	for i := range 2 {
		if err := c.Login(t.Context(), IfNeeded()); err != nil {
			t.Fatalf("Login %d: %v", i, err)
		}
	}
	if n := e.as.Stats().CodeExchanges; n != 1 {
		t.Fatalf("%d logins for two Login(IfNeeded()) calls, want 1", n)
	}
	if in, err := c.LoggedIn(t.Context()); err != nil || !in {
		t.Fatalf("LoggedIn after Login = %v, %v", in, err)
	}
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(t.Context(), IfNeeded()); err != nil {
		t.Fatal(err)
	}
	if n := e.as.Stats().CodeExchanges; n != 2 {
		t.Fatalf("%d logins after a logout, want 2", n)
	}
}

// Without a refresh token (client credentials here) the stored access token
// is still found and revoked: Logout never claims "nothing stored" while a
// live token is stored.
func TestLogoutWithoutRefreshToken(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
	c := e.client(t, clientCredentials("job", "job-secret"))
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Logout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Found || !slices.Equal(res.Revoked, []string{"access token"}) || !res.LocalDeleted {
		t.Fatalf("result %+v, want the access token found, revoked and deleted", res)
	}
	if n := e.as.Stats().Revocations; n != 1 {
		t.Fatalf("%d revocations, want 1", n)
	}
}
