package interop

import (
	"errors"
	"net/http"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestLogoutRevokes: Logout revokes the refresh token and the access token
// at the provider's revocation endpoint (RFC 7009, as a public client
// identified by client_id) and deletes them locally. Afterwards the
// provider refuses both: userinfo rejects the access token and the token
// endpoint answers invalid_grant to the refresh token.
//
// The provider answers a successful revocation with 200 and a body of
// "null" (RFC 7009 section 2.2 leaves the body unspecified; tokenward
// only looks at the status).
func TestLogoutRevokes(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	a := userAPI(t, p)
	s, c := signedIn(ctx, t, p, func(o *client.Options) { o.APIOrigins = []string{a.srv.URL} })
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	rts := s.store.refreshTokens()
	if len(rts) != 1 {
		t.Fatalf("%d refresh tokens stored after Login, want 1", len(rts))
	}
	// Both are live before the logout, so their refusal afterwards is the
	// logout's doing.
	if sub, err := p.userinfo(ctx, tok.AccessToken); err != nil || sub != userID {
		t.Fatalf("before Logout: userinfo = %q, %v; want %q", sub, err, userID)
	}

	if _, err := c.Logout(ctx); err != nil {
		var le *client.LogoutError
		errors.As(err, &le)
		t.Fatalf("Logout: %v (details: %+v)", err, le)
	}
	if _, err := p.userinfo(ctx, tok.AccessToken); err == nil {
		t.Errorf("after Logout the provider still accepts the access token at userinfo")
	}
	status, code, err := p.refreshStatus(ctx, rts[0])
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("after Logout the refresh token got HTTP %d %q, want 400 invalid_grant", status, code)
	}
	if n := s.store.entries(); n != 0 {
		t.Errorf("%d entries left in the store after Logout, want 0", n)
	}
	st, err := c.Status(ctx)
	if err != nil || st.LoggedIn || st.HasRefreshToken {
		t.Errorf("Status after Logout: logged in %v, refresh token %v, err %v; want neither", st != nil && st.LoggedIn, st != nil && st.HasRefreshToken, err)
	}
	_, err = c.Token(ctx)
	if !errors.Is(err, client.ErrReauthRequired) {
		t.Fatalf("Token after Logout: err = %v, want ErrReauthRequired", err)
	}
	if s.count(client.EventLogout) != 1 {
		t.Errorf("%d logout events, want 1", s.count(client.EventLogout))
	}
	s.noLeaks(t, []string{tok.AccessToken, rts[0]}, err.Error())
}
