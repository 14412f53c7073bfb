package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	cases := []struct {
		name string
		mod  func(*Options)
		want error
	}{
		{"no client id", func(c *Options) { c.ClientID = "" }, ErrInvalidConfig},
		{"no issuer or token url", func(c *Options) { c.Issuer = "" }, ErrInvalidConfig},
		{"http issuer without opt-in", func(c *Options) { c.AllowInsecureLoopback = false }, ErrInsecureURL},
		{"http non-loopback token url", func(c *Options) { c.Issuer = ""; c.Endpoints.TokenURL = "http://as.example/token" }, ErrInsecureURL},
		{"http api origin", func(c *Options) { c.APIOrigins = []string{"http://api.example"} }, ErrInsecureURL},
		{"api origin with path", func(c *Options) { c.APIOrigins = []string{"https://api.example/v1"} }, ErrInvalidConfig},
		{"basic without secret", func(c *Options) { c.AuthMethod = AuthSecretBasic }, ErrInvalidConfig},
		{"jwt without key", func(c *Options) { c.AuthMethod = AuthPrivateKeyJWT }, ErrInvalidConfig},
		{"small rsa key", func(c *Options) { c.PrivateKey = small }, ErrInvalidConfig},
		{"unknown method", func(c *Options) { c.AuthMethod = "guess" }, ErrInvalidConfig},
		{"unknown grant", func(c *Options) { c.Grant = "implicit" }, ErrInvalidConfig},
		{"client credentials without secret", func(c *Options) { c.Grant = GrantClientCredentials }, ErrInvalidConfig},
		{"bad scope", func(c *Options) { c.Scopes = []string{"a b"} }, ErrInvalidConfig},
		{"relative resource", func(c *Options) { c.Resources = []string{"/api"} }, ErrInvalidConfig},
		{"non-loopback redirect host", func(c *Options) { c.RedirectHost = "0.0.0.0" }, ErrInvalidConfig},
		{"token with white space", func(c *Options) { c.AccessToken = "a b" }, ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := e.config()
			tc.mod(&cfg)
			c, err := New(t.Context(), with(cfg))
			if !errors.Is(err, tc.want) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{DiscoveryIssuer: "https://evil.example"})
	_, err := New(t.Context(), with(e.config()))
	if !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("New = %v, want ErrIssuerMismatch", err)
	}
}

func TestExplicitEndpointsWithoutDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
	cfg.Issuer = ""
	cfg.Endpoints = Endpoints{TokenURL: e.as.TokenURL()}
	cfg.AuthMethod = AuthSecretBasic
	c := mustNew(t, cfg)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := e.as.Stats().Requests[oauthtest.EndpointDiscovery]; n != 0 {
		t.Fatalf("discovery requested %d times", n)
	}
}

// The auth method comes from discovery when not configured, and each
// request is sent once with it: a server that accepts only
// client_secret_post sees no Basic attempt first (O-08).
func TestAuthMethodFromDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	cfg := e.confidential(t, "poster", "post-secret", oauthtest.AuthClientSecretPost)
	c := mustNew(t, cfg)
	if c.method != AuthSecretBasic && c.method != AuthSecretPost {
		t.Fatalf("method %q", c.method)
	}
	_, err := c.Token(t.Context())
	if c.method == AuthSecretBasic {
		// The fake advertises both; basic is RFC 8414's default choice, and
		// a server that insists on post rejects it once, with no retry.
		if !errors.Is(err, ErrClientRejected) {
			t.Fatalf("Token = %v", err)
		}
		if n := e.as.Stats().TokenPosts; n != 1 {
			t.Fatalf("token POSTs = %d, want 1: no second attempt with another auth style", n)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	for name, gen := range map[string]func() (any, any){
		"ec":  func() (any, any) { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k, &k.PublicKey },
		"rsa": func() (any, any) { k, _ := rsa.GenerateKey(rand.Reader, 2048); return k, &k.PublicKey },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{})
			priv, pub := gen()
			if err := e.as.Update(func(c *oauthtest.Config) {
				c.Clients = []oauthtest.Client{{ID: "signer", PublicKey: pub}}
			}); err != nil {
				t.Fatal(err)
			}
			cfg := e.config()
			cfg.ClientID, cfg.Grant = "signer", GrantClientCredentials
			switch k := priv.(type) {
			case *ecdsa.PrivateKey:
				cfg.PrivateKey = k
			case *rsa.PrivateKey:
				cfg.PrivateKey = k
			}
			c := mustNew(t, cfg)
			if c.method != AuthPrivateKeyJWT {
				t.Fatalf("method %q", c.method)
			}
			// Two 503s: each retry must carry a fresh assertion (the server
			// refuses a replayed jti).
			e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatalf("Token: %v", err)
			}
			if n := e.as.Stats().ClientAuthFailures; n != 0 {
				t.Fatalf("client auth failures: %d", n)
			}
		})
	}
}

// O-02: two clients for one profile share one token cache.
func TestClientsShareOneCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	c1 := mustNew(t, e.config())
	login(t, c1)
	c2 := mustNew(t, e.config())
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

// S-01/S-03: no keychain and no opt-in: New fails with ErrStoreUnavailable
// naming the opt-ins; a locked keychain is ErrLocked; neither falls back.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
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

// One TLS configuration (here a private CA) serves the authorization server
// and the API, and https needs no loopback opt-in.
func TestTLSConfigForServerAndAPI(t *testing.T) {
	t.Parallel()
	as := oauthtest.Start(t, oauthtest.Config{TLS: true, Clients: []oauthtest.Client{{ID: "job", Secret: "tls-secret"}}})
	api := oauthtest.StartAPI(t, as, "")
	st, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	cfg := Options{Issuer: as.Issuer(), ClientID: "job", ClientSecret: "tls-secret", Grant: GrantClientCredentials,
		Resources: []string{api.Resource()}, Store: st, HTTP: HTTPSettings{TLSConfig: &tls.Config{RootCAs: as.CertPool()}}}
	c := mustNew(t, cfg)
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, api.URL()+"/x"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// Without the CA the server is not trusted (discovery is cached per
	// process, so this shows on the token request).
	cfg.HTTP.TLSConfig = nil
	cfg.Profile = "no-ca"
	c2, err := New(t.Context(), with(cfg))
	if err == nil {
		defer c2.Close()
		_, err = c2.Token(t.Context())
	}
	if !errors.Is(err, ErrNetwork) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v, want a network (certificate) error", err)
	}
}

// One concept, one name: every package's invalid-configuration error
// matches ErrInvalidConfig, whichever package's name the caller uses.
func TestInvalidConfigOneName(t *testing.T) {
	t.Parallel()
	_, storeErr := store.Open(t.Context(), func(o *store.Options) { o.Mode = "no-such-mode" })
	_, transportErr := transport.New(nil)
	_, refreshErr := refresh.New("", nil)
	for name, err := range map[string]error{"store.Open": storeErr, "transport.New": transportErr, "refresh.New": refreshErr} {
		for _, target := range []error{ErrInvalidConfig, store.ErrInvalidConfig, transport.ErrInvalidConfig, refresh.ErrInvalidConfig} {
			if !errors.Is(err, target) {
				t.Errorf("%s: %v does not match %v", name, err, target)
			}
		}
	}
}
