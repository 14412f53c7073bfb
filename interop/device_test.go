package interop

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestDeviceLogin: the device authorization grant (RFC 8628). The prompt
// receives the user code and the verification addresses; a second
// "device" (an HTTP client with cookies) opens the complete address,
// signs in on the provider's device pages and allows the request, while
// tokenward polls. The provider asks for a 5 s poll interval, which
// tokenward keeps, so this test takes about 5 s.
func TestDeviceLogin(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	a := userAPI(t, p)
	b := newBrowser(t)

	var shown client.DeviceCode
	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.ClientID = nativeClientID
		o.Scopes = loginScopes
		o.APIOrigins = []string{a.srv.URL}
		o.DevicePrompt = func(ctx context.Context, d client.DeviceCode) {
			shown = d
			b.done <- b.approveDevice(ctx, d, "allowed")
			<-ctx.Done()
		}
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if err := c.Login(ctx, client.WithDevice()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	// Login waits for the prompt to return, so shown is set.
	if err := <-b.done; err != nil {
		t.Fatalf("device approval: %v", err)
	}
	if shown.UserCode == "" || !strings.HasPrefix(shown.VerificationURI, p.issuer+"/device") || shown.Expiry.IsZero() {
		t.Errorf("prompt got code %q at %q expiring %v; want a code at %s/device and an expiry", shown.UserCode, shown.VerificationURI, shown.Expiry, p.issuer)
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !st.LoggedIn || !st.HasRefreshToken || st.Subject != userID {
		t.Errorf("Status = logged in %v, refresh token %v, subject %q; want true, true, %q", st.LoggedIn, st.HasRefreshToken, st.Subject, userID)
	}
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		t.Fatalf("HTTPClient: %v", err)
	}
	if status, body := a.call(ctx, t, hc); status != 200 || body != userID {
		t.Fatalf("API answered %d %q, want 200 %q (rejections: %q)", status, body, userID, a.refusals())
	}
	s.noLeaks(t, append(append(a.tokens(), s.store.refreshTokens()...), shown.UserCode))
}

// TestDeviceLoginDenied: the user refuses the request on the provider's
// confirmation page; the provider answers the next poll with access_denied
// and Login fails with ErrAccessDenied, storing nothing.
func TestDeviceLoginDenied(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	b := newBrowser(t)

	s, opts := p.options(t)
	c, err := client.New(ctx, opts, func(o *client.Options) {
		o.ClientID = nativeClientID
		o.Scopes = loginScopes
		o.DevicePrompt = func(ctx context.Context, d client.DeviceCode) {
			b.done <- b.approveDevice(ctx, d, "denied")
			<-ctx.Done()
		}
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	err = c.Login(ctx, client.WithDevice())
	if derr := <-b.done; derr != nil {
		t.Fatalf("device denial: %v", derr)
	}
	if !errors.Is(err, client.ErrAccessDenied) {
		t.Fatalf("Login: err = %v, want ErrAccessDenied", err)
	}
	if n := s.store.entries(); n != 0 {
		t.Errorf("%d entries stored after a denied login, want 0", n)
	}
	s.noLeaks(t, nil, err.Error())
}
