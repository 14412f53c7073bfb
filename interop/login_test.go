package interop

import (
	"context"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// loginScopes are the scopes of the logins: offline_access, because the
// provider issues a refresh token only when it is asked for (OpenID
// Connect Core section 11), and profile for the subject's details.
var loginScopes = []string{"openid", "offline_access", "profile"}

// userAPI starts an API that accepts a token when the provider's userinfo
// endpoint does, and answers with its subject.
func userAPI(t *testing.T, p *provider) *api {
	t.Helper()
	return newAPI(t, func(ctx context.Context, tok string) (string, error) { return p.userinfo(ctx, tok) })
}

// browserLogin logs c's user in through the browser flow and fails the
// test unless the headless browser reached tokenward's redirect listener.
func browserLogin(ctx context.Context, t *testing.T, c *client.Client, b *browser) {
	t.Helper()
	if err := c.Login(ctx); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if err := <-b.done; err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// signedIn returns a Client of the public client, with mod's changes to
// its Options, logged in through the headless browser, and its session.
// The Client is closed when the test ends.
func signedIn(ctx context.Context, t *testing.T, p *provider, mod func(*client.Options)) (*session, *client.Client) {
	t.Helper()
	b := newBrowser(t)
	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.ClientID = nativeClientID
		o.Scopes = loginScopes
		o.OpenBrowser = b.open
	}, mod)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	browserLogin(ctx, t, c, b)
	return s, c
}

// TestBrowserLogin: the authorization code flow with PKCE (S256) on a
// loopback redirect with a random port, which the provider matches
// against the registered port-less redirect URI (RFC 8252 section 7.3).
// The browser is an HTTP client with cookies that fills in the provider's
// own login form. After Login the tokens are stored, the subject comes
// from the ID token, and the API receives the access token the provider
// issued and finds it live at the userinfo endpoint.
func TestBrowserLogin(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	a := userAPI(t, p)
	s, c := signedIn(ctx, t, p, func(o *client.Options) { o.APIOrigins = []string{a.srv.URL} })

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !st.LoggedIn || !st.HasRefreshToken || st.Subject != userID {
		t.Errorf("Status = logged in %v, refresh token %v, subject %q; want true, true, %q", st.LoggedIn, st.HasRefreshToken, st.Subject, userID)
	}
	if s.count(client.EventLogin) != 1 {
		t.Errorf("%d login events, want 1", s.count(client.EventLogin))
	}

	a.callAs(ctx, t, c, userID)
	s.noLeaks(t, append(a.tokens(), s.store.refreshTokens()...))
}
