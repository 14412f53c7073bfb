package interop

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestDiscovery: tokenward finds the provider's endpoints from its issuer
// alone. The provider serves only the OpenID Connect document (its RFC 8414
// address answers 404), so this also checks the fallback from one to the
// other, and that the document's issuer is compared exactly.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	resp, err := direct.Get(p.issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the provider's RFC 8414 address answered HTTP %d; this test expects 404, to cover the fallback", resp.StatusCode)
	}

	t.Run("endpoints found", func(t *testing.T) {
		s, opts := p.options(t)
		c, err := client.New(ctx, opts, func(o *client.Options) { o.ClientID = nativeClientID })
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer c.Close()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if st.Issuer != p.issuer || st.ClientID != nativeClientID || st.LoggedIn {
			t.Errorf("Status = issuer %q, client %q, logged in %v; want %q, %q, false", st.Issuer, st.ClientID, st.LoggedIn, p.issuer, nativeClientID)
		}
		s.noLeaks(t, nil)
	})

	t.Run("issuer compared exactly", func(t *testing.T) {
		// The same server named with a trailing slash is another issuer
		// (RFC 8414 section 3.3): the document's issuer has none.
		_, opts := p.options(t)
		_, err := client.New(ctx, opts, func(o *client.Options) {
			o.ClientID = nativeClientID
			o.Issuer = p.issuer + "/"
		})
		if !errors.Is(err, client.ErrIssuerMismatch) {
			t.Fatalf("New with %q: err = %v, want ErrIssuerMismatch", p.issuer+"/", err)
		}
	})

	t.Run("http refused without the loopback opt-in", func(t *testing.T) {
		_, opts := p.options(t)
		_, err := client.New(ctx, opts, func(o *client.Options) {
			o.ClientID = nativeClientID
			o.AllowInsecureLoopback = false
		})
		if !errors.Is(err, client.ErrInsecureURL) {
			t.Fatalf("New over http without AllowInsecureLoopback: err = %v, want ErrInsecureURL", err)
		}
		if !strings.Contains(err.Error(), "discovery") && !strings.Contains(err.Error(), "config") {
			t.Errorf("error does not name the operation: %v", err)
		}
	})
}
