package client

import (
	"errors"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Two resources from one login: each API gets only its own token (a token
// for one API must not be usable at another); one refresh token serves
// both and is rotated safely.
func TestTwoResourcesOneLogin(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c := mustNew(t, cfg)
	login(t, c)
	ra, err := c.ForResource(e.api.Resource())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := c.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := ra.HTTPClient(t.Context())
	hb, _ := rb.HTTPClient(t.Context())
	for i := range 3 {
		if code, body := get(t, ha, e.api.URL()+"/a"); code != 200 {
			t.Fatalf("API A: %d %s", code, body)
		}
		if code, body := get(t, hb, apiB.URL()+"/b"); code != 200 {
			t.Fatalf("API B: %d %s", code, body)
		}
		// A's client pointed at B (and back) must not carry A's token.
		get(t, ha, apiB.URL()+"/cross")
		get(t, hb, e.api.URL()+"/cross")
		// Force new tokens for both: each uses (and rotates) the one
		// refresh token. (Clear, not Invalidate: repeated rejections of
		// fresh tokens are rate-limited, by design.)
		for _, r := range []*Resource{ra, rb} {
			if err := r.cache.Clear(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		_ = i
	}
	for _, api := range []*oauthtest.API{e.api, apiB} {
		s := api.Stats()
		if s.Foreign != 0 || s.Unknown != 0 {
			t.Fatalf("API %s received foreign tokens: %+v", api.Resource(), s)
		}
		if s.OK < 3 {
			t.Fatalf("API %s: %+v", api.Resource(), s)
		}
	}
	st := e.as.Stats()
	if st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 || st.FamilyRevocations != 0 {
		t.Fatalf("refresh token reused: %+v", st)
	}
	if st.Grants[oauthtest.GrantRefreshToken] < 6 {
		t.Fatalf("refresh grants = %d, want >= 6", st.Grants[oauthtest.GrantRefreshToken])
	}
	// Logout revokes and forgets every resource's token.
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("resource token after logout: %v", err)
	}
}

// A resource cache shared by two Clients keeps working after the Client
// that created it is closed (its upstream must not depend on that Client).
func TestSharedResourceCacheOutlivesItsCreator(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, cfg)
	login(t, c1)
	if _, err := c1.ForResource(apiB.Resource()); err != nil {
		t.Fatal(err)
	}
	c2 := mustNew(t, cfg)
	rb2, err := c2.ForResource(apiB.Resource())
	if err != nil {
		t.Fatal(err)
	}
	c1.Close()
	if _, err := rb2.Token(t.Context()); err != nil {
		t.Fatalf("resource token after the first Client closed: %v", err)
	}
	if _, err := c1.Token(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token on a closed Client = %v, want ErrClosed", err)
	}
	if _, err := c1.Logout(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Logout on a closed Client = %v, want ErrClosed", err)
	}
	if _, err := c1.Status(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Status on a closed Client = %v, want ErrClosed", err)
	}
	if _, err := c1.HTTPClient(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("HTTPClient on a closed Client = %v, want ErrClosed", err)
	}
}

// The login entry of a one-resource configuration and the minted entry of
// the same resource under a several-resource configuration never collide.
func TestLoginAndResourceKeysDiffer(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	one := e.config() // Resources: [api A]
	many := e.config()
	many.Resources = []string{e.api.Resource(), apiB.Resource()}
	c1 := mustNew(t, one)
	c2 := mustNew(t, many)
	ra, _ := c2.ForResource(e.api.Resource())
	if mustDefault(t, c1).key.String() == ra.key.String() {
		t.Fatal("a login entry and a minted resource entry share a key")
	}
}

// Two Clients of one credential, each with its own handle on the same
// persistent backend (two store.Open calls on one encrypted-file
// directory, as two parts of one program would do): both open, share the
// token caches, and one login serves both.
func TestTwoClientsTwoHandlesOneBackend(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	dir := t.TempDir()
	open := func() store.Store {
		st, err := store.Open(t.Context(), func(o *store.Options) {
			o.Mode, o.Dir, o.LockDir, o.Passphrase = store.ModeEncryptedFile, dir+"/data", dir+"/locks", "two handles"
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	cfg := e.config()
	cfg.Store = open()
	c1 := mustNew(t, cfg)
	cfg.Store = open()
	c2, err := New(t.Context(), with(cfg))
	if err != nil {
		t.Fatalf("a second Client on another handle of the same backend: %v", err)
	}
	defer c2.Close()
	login(t, c1)
	if _, err := c2.Token(t.Context()); err != nil {
		t.Fatalf("the second Client does not see the first one's login: %v", err)
	}
}

// Two encrypted-file handles on one directory are one store only when they
// open it with the same passphrase and lock it in the same lock directory:
// with another passphrase the second Client could not read what the first
// one saves (and would silently use the first one's handle, and its
// passphrase, if they counted as one), and with another lock directory
// their processes' refreshes would not exclude each other. Such a second
// Client fails with ErrInvalidConfig.
func TestTwoHandlesOfOneDirectoryDiffer(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	dir := t.TempDir()
	open := func(pass, locks string) store.Store {
		st, err := store.Open(t.Context(), func(o *store.Options) {
			o.Mode, o.Dir, o.LockDir, o.Passphrase = store.ModeEncryptedFile, dir+"/data", dir+"/"+locks, pass
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	cfg := e.config()
	cfg.Store = open("first passphrase", "locks")
	c1 := mustNew(t, cfg)
	for name, st := range map[string]store.Store{
		"another passphrase":     open("second passphrase", "locks"),
		"another lock directory": open("first passphrase", "other-locks"),
	} {
		if st.Status() != c1.grant.store.Status() {
			t.Fatalf("%s: the Status differs (%v, %v): the test would not show what it means to", name, st.Status(), c1.grant.store.Status())
		}
		cfg.Store = st
		c2, err := New(t.Context(), with(cfg))
		if err == nil {
			same := c2.grant.store == c1.grant.store
			c2.Close()
			t.Fatalf("%s: a second Client was created (using the first one's handle: %v), want ErrInvalidConfig", name, same)
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// A token an earlier run minted for a resource this process never uses is
// dropped by a new Login and by Logout all the same: the next process to
// ask for that resource is never served the previous user's token.
func TestDerivedTokensOfEarlierRunsDropped(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"login", "logout"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			// The login names no resource, so it may mint tokens for any.
			e := newFixture(t, oauthtest.Config{Subject: "alice"}, withOptions(func(o *Options) {
				o.Resources, o.APIOrigins = nil, []string{"http://127.0.0.1:1"}
			}))
			apiB := oauthtest.StartAPI(t, e.as, "")
			// Run 1: alice uses API B through ForResource, and exits.
			c := e.client(t)
			login(t, c)
			rb, err := c.ForResource(apiB.Resource())
			if err != nil {
				t.Fatal(err)
			}
			alices, err := rb.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()

			// Run 2 never touches API B: it logs in as bob, or logs out.
			c = e.client(t)
			if how == "login" {
				if err := e.as.Update(func(cfg *oauthtest.Config) { cfg.Subject = "bob" }); err != nil {
					t.Fatal(err)
				}
				login(t, c)
			} else if _, err := c.Logout(t.Context()); err != nil {
				t.Fatal(err)
			}
			c.Close()

			// Nothing of alice's for API B is left in the store.
			if _, err := e.store.Load(t.Context(), c.grant.resourceKey([]string{apiB.Resource()}).String()); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("alice's token for API B is still stored after a %s (%v)", how, err)
			}
			if how == "logout" {
				return
			}
			// Run 3: API B gets a token minted from bob's login.
			c = e.client(t)
			rb, err = c.ForResource(apiB.Resource())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := rb.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == alices.AccessToken {
				t.Fatal("run 3 was served alice's token for API B after bob logged in")
			}
		})
	}
}
