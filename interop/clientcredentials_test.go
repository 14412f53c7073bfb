package interop

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestClientCredentials: a server job gets a token with its client secret
// (sent with HTTP Basic, form-encoded first as RFC 6749 section 2.3.1
// asks: the secret holds '+', '/' and '='), and the API it calls receives
// exactly that token and finds it live, and meant for it, at the
// provider's introspection endpoint.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	a := newAPI(t, func(ctx context.Context, tok string) (string, error) {
		in, err := p.introspect(ctx, tok)
		if err != nil {
			return "", err
		}
		// The example storage answers "active" only to a client in the
		// token's audience and leaves "aud" out of the answer, so active
		// alone says the token is live and meant for this API.
		if !in.Active {
			return "", errors.New("introspection: inactive")
		}
		return in.Subject, nil
	})

	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.Grant = client.GrantClientCredentials
		o.ClientID = serviceClientID
		o.ClientSecret = serviceSecret
		// The example storage fills in the subject of an introspection
		// answer only for a token with the openid scope; asking for it
		// lets the API name its caller, and checks that the scope is sent.
		o.Scopes = []string{"openid"}
		o.APIOrigins = []string{a.srv.URL}
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	a.callAs(ctx, t, c, serviceClientID)
	st, err := c.Status(ctx)
	if err != nil || !st.LoggedIn {
		t.Errorf("Status: logged in %v, err %v; want a current token", st != nil && st.LoggedIn, err)
	}
	s.noLeaks(t, a.tokens())

	t.Run("wrong secret", func(t *testing.T) {
		const wrong = "canary-secret-wrong-0b7e"
		s, opts := p.options(t)
		c, err := client.New(ctx, opts, func(o *client.Options) {
			o.Grant = client.GrantClientCredentials
			o.ClientID = serviceClientID
			o.ClientSecret = wrong
			o.APIOrigins = []string{a.srv.URL}
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer c.Close()
		_, err = c.Token(ctx)
		if !errors.Is(err, client.ErrClientRejected) {
			t.Fatalf("Token with a wrong secret: err = %v, want ErrClientRejected", err)
		}
		s.noLeaks(t, []string{wrong}, err.Error())
	})
}
