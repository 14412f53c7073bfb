package client

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
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
		{"store mode and store", func(c *Options) { c.StoreMode = store.ModeMemory }, ErrInvalidConfig},
		{"unknown store mode", func(c *Options) { c.Store, c.StoreMode = nil, "cloud" }, ErrInvalidConfig},
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

// Options.StoreMode chooses the store New opens, in one field, and wins
// over the environment.
func TestStoreMode(t *testing.T) {
	t.Setenv(store.EnvMode, string(store.ModePlaintextFile))
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
	c := e.client(t, clientCredentials("job", "job-secret"), func(o *Options) {
		o.Store, o.StoreMode = nil, store.ModeMemory
	})
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage.Mode != store.ModeMemory {
		t.Fatalf("storage mode %q, want memory", st.Storage.Mode)
	}
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// One TLS configuration (here a private CA) serves the authorization server
// and the API, and https needs no loopback opt-in.
func TestTLSConfigForServerAndAPI(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{TLS: true, Clients: []oauthtest.Client{{ID: "job", Secret: "tls-secret"}}})
	as, api := e.as, e.api
	cfg := e.config()
	clientCredentials("job", "tls-secret")(&cfg)
	cfg.Scopes, cfg.Logger, cfg.AllowInsecureLoopback = nil, nil, false
	cfg.HTTP = HTTPSettings{TLSConfig: &tls.Config{RootCAs: as.CertPool()}}
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
