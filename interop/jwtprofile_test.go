package interop

import (
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestPrivateKeyJWTLogin: a login whose code exchange authenticates the
// client with private_key_jwt (RFC 7523 section 2.2). The provider accepts
// only an assertion whose audience contains its issuer identifier (op's
// VerifyJWTAssertion), which is what tokenward sends: the issuer alone, as
// the update of RFC 7523 under way in the IETF asks after the audience
// injection attacks on private_key_jwt (an assertion addressed to an
// endpoint URL could be replayed at another server).
func TestPrivateKeyJWTLogin(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	b := newBrowser(t)

	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.ClientID = jwtClientID
		o.PrivateKey = p.jwtKey
		o.KeyID = jwtKeyID
		o.Scopes = loginScopes
		o.OpenBrowser = b.open
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	err = c.Login(ctx)
	if berr := <-b.done; berr != nil {
		t.Fatalf("browser: %v", berr)
	}
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || !st.LoggedIn {
		t.Fatalf("Status = %+v, %v; want logged in", st, err)
	}
	if _, err := c.Token(ctx); err != nil {
		t.Fatalf("Token: %v", err)
	}
	tok, _ := c.Token(ctx)
	s.noLeaks(t, append([]string{tok.AccessToken}, s.store.refreshTokens()...))
}
