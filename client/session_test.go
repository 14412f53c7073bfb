package client

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

func TestBrowserLoginThenAPIAndLogout(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{IDToken: true})
	c := e.client(t)
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token before login = %v, want ErrReauthRequired", err)
	}
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, e.api.URL()+"/me"); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	st, err := c.Status(t.Context())
	if err != nil || !st.LoggedIn || !st.HasRefreshToken || st.Subject != oauthtest.DefaultSubject {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if s := e.as.Stats(); s.Revocations < 1 {
		t.Fatalf("revocations = %d", s.Revocations)
	}
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token after logout = %v, want ErrReauthRequired", err)
	}
	if st, _ := c.Status(t.Context()); st.LoggedIn {
		t.Fatal("still logged in after Logout")
	}
}

// A keychain that was locked after the Client opened it (a screen lock, a
// keyring locked by hand): Login fails with ErrLocked before it asks the
// server for a device code or opens a browser, so the user is never asked
// to approve a login whose tokens could not be kept.
func TestLoginChecksStoreFirst(t *testing.T) {
	t.Parallel()
	for _, device := range []bool{true, false} {
		name := "browser"
		if device {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{})
			kc := fakekeychain.NewSecretService()
			st, err := store.Open(t.Context(), func(o *store.Options) {
				o.Mode, o.Backend, o.LockDir = store.ModeKeychain, kc, t.TempDir()
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config()
			cfg.Store = st
			var prompted, opened atomic.Bool
			cfg.DevicePrompt = func(ctx context.Context, d DeviceCode) { prompted.Store(true); <-ctx.Done() }
			cfg.OpenBrowser = func(u string) error {
				opened.Store(true)
				go e.as.Browse(context.Background(), u)
				return nil
			}
			c := mustNew(t, cfg)
			kc.SetLocked(true)
			var opts []func(*LoginOptions)
			if device {
				opts = append(opts, WithDevice())
			}
			err = c.Login(t.Context(), opts...)
			if !errors.Is(err, store.ErrLocked) || !errors.Is(err, ErrStoreLocked) {
				t.Fatalf("Login with a locked keychain = %v, want store.ErrLocked (client.ErrStoreLocked)", err)
			}
			st2 := e.as.Stats()
			if n := st2.Requests[oauthtest.EndpointDeviceAuthorization] + st2.Requests[oauthtest.EndpointAuthorize]; n != 0 || prompted.Load() || opened.Load() {
				t.Fatalf("a login was started with a locked keychain: %d requests, prompted %v, browser opened %v", n, prompted.Load(), opened.Load())
			}
			// Unlocked, the same Client logs in.
			kc.SetLocked(false)
			if err := c.Login(t.Context(), opts...); err != nil {
				t.Fatalf("Login after unlocking: %v", err)
			}
		})
	}
}

// After a new user logs in, the other APIs are not called with the previous
// user's tokens, including ones an earlier process stored.
func TestLoginDropsPreviousUsersResourceTokens(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Subject: "alice"})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, cfg)
	login(t, c1)
	rb, _ := c1.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	c1.Close() // an earlier process

	e.as.Update(func(c *oauthtest.Config) { c.Subject = "bob" })
	c2 := mustNew(t, cfg)
	login(t, c2)
	rb2, _ := c2.ForResource(apiB.Resource())
	tok, err := rb2.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, ok := e.as.Introspect(tok.AccessToken)
	if !ok || info.Subject != "bob" {
		t.Fatalf("API B's token belongs to %q after bob logged in", info.Subject)
	}
}

// A failing revocation endpoint does not keep the local entry: the tokens
// are deleted anyway, and the error says which ones the server may still
// honour.
func TestLogoutRevocationFails(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.loggedIn(t)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
	_, err := c.Logout(t.Context())
	var le *LogoutError
	if !errors.As(err, &le) {
		t.Fatalf("Logout = %v, want *LogoutError", err)
	}
	if !le.LocalDeleted || !contains(le.NotRevoked, "refresh token") || !contains(le.NotRevoked, "access token") {
		t.Fatalf("LogoutError = %+v", le)
	}
	if !strings.Contains(err.Error(), "refresh token") {
		t.Fatalf("error does not say what was not revoked: %v", err)
	}
	if _, lerr := e.store.Load(t.Context(), c.baseKey().String()); !errors.Is(lerr, store.ErrNotFound) {
		t.Fatalf("local entry still there: %v", lerr)
	}
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token after logout = %v", err)
	}
}

// Logout deletes locally even when revocation hangs past the caller's
// deadline.
func TestLogoutDeletesWhenRevocationHangs(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.loggedIn(t)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointRevocation})
	defer e.as.ReleaseHangs()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Logout(ctx)
	var le *LogoutError
	if !errors.As(err, &le) || !le.LocalDeleted || !contains(le.NotRevoked, "refresh token") {
		t.Fatalf("Logout = %v", err)
	}
	if _, err := e.store.Load(t.Context(), c.baseKey().String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the login is still stored: %v", err)
	}
}

// A later process's Logout also removes the tokens that an earlier process
// minted for the configured resources.
func TestLogoutRemovesEarlierResourceTokens(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	cfg.Profile = "earlier"
	c1 := mustNew(t, cfg)
	login(t, c1)
	rb, _ := c1.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	name := rb.key.String()
	c1.Close()
	if _, err := e.store.Load(t.Context(), name); err != nil {
		t.Fatalf("resource entry not stored: %v", err)
	}
	c2 := mustNew(t, cfg)
	if _, err := c2.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Load(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resource entry left behind: %v", err)
	}
}

// Login publishes the new login before it drops the tokens derived from
// the previous one. Between those two steps a request on another resource
// may mint a token; it must mint with the new login's refresh token (or be
// dropped by the second step), never with the old one's: a token minted
// from the previous login and stored after the drop would serve the new
// user's calls to that API as the previous user. The test hook runs such a
// request exactly between the two steps.
func TestLoginPublishesBeforeDroppingDerivedTokens(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Subject: "alice"})
	apiB := oauthtest.StartAPI(t, e.as, "")
	c := e.loggedIn(t, func(o *Options) { o.Resources = []string{e.api.Resource(), apiB.Resource()} })
	rb, err := c.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatal(err)
	}

	e.as.Update(func(c *oauthtest.Config) { c.Subject = "bob" })
	var between int
	c.betweenLoginSteps = func() {
		between++
		if _, err := rb.Token(t.Context()); err != nil {
			t.Errorf("a request on API B during the login: %v", err)
		}
	}
	login(t, c)
	if between != 1 {
		t.Fatalf("the hook ran %d times, want 1", between)
	}
	tok, err := rb.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := e.as.Introspect(tok.AccessToken); !ok || info.Subject != "bob" {
		t.Fatalf("after bob's login API B's token belongs to %q", info.Subject)
	}
	stored, err := e.store.Load(t.Context(), rb.key.String())
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := e.as.Introspect(stored.AccessToken); !ok || info.Subject != "bob" {
		t.Fatalf("after bob's login the store holds API B's token of %q", info.Subject)
	}
}
