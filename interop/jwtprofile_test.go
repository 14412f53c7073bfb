package interop

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestPrivateKeyJWTAudienceRefused pins down where tokenward and this
// provider disagree on private_key_jwt client authentication (RFC 7523
// section 2.2, OpenID Connect Core section 9), so that a change on either
// side shows up here.
//
// tokenward puts the token endpoint URL in the assertion's "aud", as OpenID
// Connect Core section 9 says it SHOULD. The provider accepts only an
// assertion whose audience contains its issuer identifier (op's
// VerifyJWTAssertion), which is what the update of RFC 7523 under way in
// the IETF (written after the audience injection attacks on
// private_key_jwt) asks for, so the login's code exchange is refused. The
// provider also answers invalid_grant where RFC 6749 section 5.2 asks for
// invalid_client, so tokenward reports a login to redo
// (ErrReauthRequired) rather than a rejected client. Sending the issuer
// instead would change what tokenward sends to every server and is not a
// change for this suite to make; when tokenward sends it, this test fails
// and should become a successful login.
func TestPrivateKeyJWTAudienceRefused(t *testing.T) {
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
	// The browser part succeeds: the code reaches tokenward's listener.
	if berr := <-b.done; berr != nil {
		t.Fatalf("browser: %v", berr)
	}
	if err == nil {
		t.Fatal("Login succeeded: the provider now accepts tokenward's private_key_jwt audience; turn this test into a login test")
	}
	var ee *client.EndpointError
	if !errors.As(err, &ee) || ee.Status != http.StatusBadRequest || !errors.Is(err, client.ErrReauthRequired) {
		t.Fatalf("Login: err = %v; want the token endpoint's HTTP 400 invalid_grant", err)
	}
	if !strings.Contains(err.Error(), "token request (authorization_code)") || !strings.Contains(err.Error(), "Audience must contain") {
		t.Errorf("Login: err = %v; want the code exchange refused for the assertion's audience", err)
	}
	if n := s.store.entries(); n != 0 {
		t.Errorf("%d entries stored after a failed login, want 0", n)
	}
	s.noLeaks(t, nil, err.Error())
}
