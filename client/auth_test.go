package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// The auth method comes from discovery when not configured, and each
// request is sent once with it: a server that accepts only
// client_secret_post sees no Basic attempt first (trying styles in turn
// would present single-use credentials twice).
func TestAuthMethodFromDiscovery(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
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
			e := newFixture(t, oauthtest.Config{})
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

// A private_key_jwt assertion names the issuer alone as its audience, so a
// server cannot collect assertions valid at another server's endpoint
// (audience injection); AssertionAudience overrides it for a server that
// accepts nothing else, and without an issuer the token endpoint is used.
func TestAssertionAudience(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		mod  func(o *Options, as *oauthtest.Server)
		want func(as *oauthtest.Server) string
	}{
		{"issuer", func(*Options, *oauthtest.Server) {}, func(as *oauthtest.Server) string { return as.Issuer() }},
		{"configured", func(o *Options, as *oauthtest.Server) { o.AssertionAudience = as.TokenURL() }, func(as *oauthtest.Server) string { return as.TokenURL() }},
		{"no issuer", func(o *Options, as *oauthtest.Server) { o.Issuer, o.Endpoints.TokenURL = "", as.TokenURL() }, func(as *oauthtest.Server) string { return as.TokenURL() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "signer", PublicKey: &key.PublicKey}}}, recordWire())
			cfg := e.config()
			cfg.ClientID, cfg.Grant, cfg.PrivateKey = "signer", GrantClientCredentials, key
			tc.mod(&cfg, e.as)
			if _, err := mustNew(t, cfg).Token(t.Context()); err != nil {
				t.Fatalf("Token: %v", err)
			}
			posts := e.wire.posts(oauthtest.PathToken, "client_credentials")
			if len(posts) != 1 {
				t.Fatalf("%d token POSTs", len(posts))
			}
			parts := strings.Split(posts[0].form.Get("client_assertion"), ".")
			if len(parts) != 3 {
				t.Fatal("no client assertion")
			}
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims struct {
				Aud any `json:"aud"`
			}
			if err := json.Unmarshal(raw, &claims); err != nil {
				t.Fatal(err)
			}
			if want := tc.want(e.as); claims.Aud != want {
				t.Fatalf("aud = %v, want %q", claims.Aud, want)
			}
		})
	}
}
