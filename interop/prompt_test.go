package interop

import (
	"errors"
	"io"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestPromptNoneWithoutSession: an extra authorization parameter reaches
// the provider (prompt=none, through client.WithAuthParam), and its answer
// for a browser with no session, login_required on the redirect (OpenID
// Connect Core section 3.1.2.6), comes back typed: ErrLoginRequired, which
// also matches ErrInteractionRequired. Nothing is stored.
func TestPromptNoneWithoutSession(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	b := newBrowser(t)

	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.ClientID = nativeClientID
		o.Scopes = loginScopes
		// A browser with no session: it follows the provider's redirects
		// and signs in nowhere.
		o.OpenBrowser = func(u string) error {
			resp, err := b.hc.Get(u)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.done <- err
			return err
		}
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	err = c.Login(ctx, client.WithAuthParam("prompt", "none"))
	if berr := <-b.done; berr != nil {
		t.Fatalf("browser: %v", berr)
	}
	if !errors.Is(err, client.ErrLoginRequired) || !errors.Is(err, client.ErrInteractionRequired) {
		t.Fatalf("Login(prompt=none) = %v; want ErrLoginRequired", err)
	}
	var ae *client.AuthorizationError
	if !errors.As(err, &ae) || ae.Code != "login_required" {
		t.Fatalf("Login(prompt=none) = %v; want an *AuthorizationError with login_required", err)
	}
	if n := s.store.entries(); n != 0 {
		t.Fatalf("%d token entries stored after a refused login", n)
	}
	s.noLeaks(t, nil, err.Error())
}
