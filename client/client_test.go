package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// A token given by option or environment bypasses the store: in CI and
// containers there is often no keychain, and it must never be touched.
func TestFixedTokenBypassesStore(t *testing.T) {
	e := newFixture(t, oauthtest.Config{})
	tok, err := e.as.Mint(oauthtest.Grant{Resources: []string{e.api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENWARD_TEST_ACCESS_TOKEN", tok.AccessToken)
	cs := &countingStore{}
	c, err := New(t.Context(), with(Options{AccessTokenEnv: "TOKENWARD_TEST_ACCESS_TOKEN", Store: cs, APIOrigins: []string{e.api.URL()}, AllowInsecureLoopback: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, e.api.URL()+"/x"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Logout cannot undo a fixed token: it says so, claims nothing, and
	// touches no store.
	if res, err := c.Logout(t.Context()); !errors.Is(err, ErrInvalidConfig) || res.Found || res.LocalDeleted {
		t.Fatalf("Logout with a fixed token = %+v, %v; want ErrInvalidConfig and nothing claimed", res, err)
	}
	if n := cs.calls(); n != 0 {
		t.Fatalf("store called %d times", n)
	}
}

type countingStore struct {
	mu sync.Mutex
	n  int
}

func (s *countingStore) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }
func (s *countingStore) hit()       { s.mu.Lock(); s.n++; s.mu.Unlock() }
func (s *countingStore) Load(context.Context, string) (*store.Entry, error) {
	s.hit()
	return nil, store.ErrNotFound
}
func (s *countingStore) Save(context.Context, string, *store.Entry) error { s.hit(); return nil }
func (s *countingStore) Delete(context.Context, string) error             { s.hit(); return nil }
func (s *countingStore) Lock(context.Context, string) (func() error, error) {
	s.hit()
	return func() error { return nil }, nil
}
func (s *countingStore) Status() store.Status { s.hit(); return store.Status{} }

func (s *countingStore) CheckWrite(context.Context) error { s.hit(); return nil }

// Two profiles for one issuer never read each other's tokens.
func TestProfilesIsolated(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{IDToken: true})
	mk := func(profile, subject string) *Client {
		if err := e.as.Update(func(c *oauthtest.Config) { c.Subject = subject }); err != nil {
			t.Fatal(err)
		}
		cfg := e.config()
		cfg.Profile = profile
		c := mustNew(t, cfg)
		login(t, c)
		return c
	}
	alice := mk("alice", "alice")
	bob := mk("bob", "bob")
	ta, _ := alice.Token(t.Context())
	tb, _ := bob.Token(t.Context())
	if ta.AccessToken == tb.AccessToken {
		t.Fatal("two profiles share a token")
	}
	sa, _ := alice.Status(t.Context())
	sb, _ := bob.Status(t.Context())
	if sa.Subject != "alice" || sb.Subject != "bob" {
		t.Fatalf("subjects %q %q", sa.Subject, sb.Subject)
	}
	// A fresh client for alice (a new process) sees alice's tokens.
	cfg := e.config()
	cfg.Profile = "alice"
	again := mustNew(t, cfg)
	if st, _ := again.Status(t.Context()); st.Subject != "alice" {
		t.Fatalf("alice's new client sees %q", st.Subject)
	}
	// Logging bob out leaves alice logged in.
	if _, err := bob.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := alice.Status(t.Context()); !st.LoggedIn {
		t.Fatal("logging bob out logged alice out")
	}
}

// Two clients for one profile share one token cache, so they never refresh
// the same refresh token twice (with rotation, the second refresh would
// present a spent token).
func TestClientsShareOneCache(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c1 := e.client(t)
	login(t, c1)
	c2 := e.client(t)
	t1, err := c1.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t2, err := c2.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if t1 != t2 {
		t.Fatal("two clients for one profile hold different token caches")
	}
	e.as.ResetStats()
	mustDefault(t, c1).cache.Invalidate(t1)
	var wg sync.WaitGroup
	for _, c := range []*Client{c1, c2, c1, c2} {
		wg.Add(1)
		go func() { defer wg.Done(); c.Token(t.Context()) }()
	}
	wg.Wait()
	if n := e.as.Stats().Grants[oauthtest.GrantRefreshToken]; n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
}

// No keychain and no opt-in: New fails with ErrStoreUnavailable naming the
// opt-ins; a locked keychain is ErrLocked; neither falls back to a file
// silently, which would leave tokens where the user did not agree to.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	for name, fk := range map[string]*fakekeychain.Fake{"no bus": fakekeychain.NewSecretService(), "locked": fakekeychain.NewSecretService()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "no bus" {
				fk.SetNoBus(true)
			} else {
				fk.SetLocked(true)
			}
			dir := t.TempDir()
			cfg := e.config()
			cfg.Store = nil
			cfg.StoreOptions = []func(*store.Options){func(o *store.Options) {
				o.Mode = store.ModeKeychain
				o.Backend = fk
				o.Dir, o.LockDir = dir, dir
			}}
			c, err := New(t.Context(), with(cfg))
			if err == nil {
				// A locked keychain may only show on first use.
				defer c.Close()
				_, err = c.Token(t.Context())
			}
			want := ErrStoreUnavailable
			if name == "locked" {
				want = store.ErrLocked
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			t.Logf("%s: %v", name, err)
			if name == "no bus" && !strings.Contains(err.Error(), "TOKENWARD_STORE=encrypted-file") {
				t.Fatalf("the error does not name the opt-ins: %v", err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 0 {
				t.Fatalf("files written: %v", ents)
			}
		})
	}
}

// plaintext-file warns where a person sees it, without any logger.
func TestPlaintextWarnsOnPrompt(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.config()
	dir := filepath.Join(t.TempDir(), "tokens") // created 0700 by the store
	cfg.Store = nil
	cfg.Logger = nil
	cfg.StoreOptions = []func(*store.Options){func(o *store.Options) {
		o.Mode, o.Dir, o.LockDir = store.ModePlaintextFile, dir, dir
	}}
	var prompt syncBuffer
	cfg.Prompt = &prompt
	c := mustNew(t, cfg)
	_ = c
	if !strings.Contains(prompt.String(), "WARNING") {
		t.Fatalf("no warning on the prompt: %q", prompt.String())
	}
}
