package interop

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// countingTransport counts the requests tokenward sends to one host.
type countingTransport struct {
	host string
	n    atomic.Int64
}

// RoundTrip counts a request to the host and sends it.
func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == c.host {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestOfflineStart: after a login, a new Client (a new process, in effect)
// with the stored token makes no request to the provider for New, Status
// and the token; with the provider stopped, Status still answers and
// Logout deletes the login locally and names what it could not revoke.
func TestOfflineStart(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	b := newBrowser(t)
	u, err := url.Parse(p.issuer)
	if err != nil {
		t.Fatal(err)
	}
	wire := &countingTransport{host: u.Host}

	s, opts := p.options(t)
	mine := func(o *client.Options) {
		o.ClientID = nativeClientID
		o.Scopes = loginScopes
		o.OpenBrowser = b.open
		o.HTTP.Transport = wire
	}
	first, err := client.New(ctx, opts, mine)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	browserLogin(ctx, t, first, b)
	first.Close()

	wire.n.Store(0)
	c, err := client.New(ctx, opts, mine)
	if err != nil {
		t.Fatalf("New after the login: %v", err)
	}
	defer c.Close()
	if in, err := c.LoggedIn(ctx); err != nil || !in {
		t.Fatalf("LoggedIn = %v, %v", in, err)
	}
	if _, err := c.Token(ctx); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if n := wire.n.Load(); n != 0 {
		t.Fatalf("New, LoggedIn and Token with a valid stored token sent %d requests to the provider, want 0", n)
	}
	rts := s.store.refreshTokens()
	c.Close()

	p.srv.Close()
	c, err = client.New(ctx, opts, mine)
	if err != nil {
		t.Fatalf("New with the provider stopped: %v", err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil || !st.LoggedIn || st.Subject != userID {
		t.Fatalf("Status with the provider stopped = %+v, %v", st, err)
	}
	res, err := c.Logout(ctx)
	var le *client.LogoutError
	if !errors.As(err, &le) || !errors.Is(err, client.ErrNetwork) || !slices.Contains(le.NotRevoked, "refresh token") {
		t.Fatalf("Logout with the provider stopped = %v; want a *LogoutError naming the refresh token, matching ErrNetwork", err)
	}
	if !res.Found || !res.LocalDeleted || s.store.entries() != 0 {
		t.Fatalf("Logout result %+v with %d token entries left; want found and deleted", res, s.store.entries())
	}
	s.noLeaks(t, rts, err.Error())
}
