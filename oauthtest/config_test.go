package oauthtest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// TestNamesMatchTheWireFormat: the names the package spells out for its
// users are the ones the SDK's wire code sends and expects.
func TestNamesMatchTheWireFormat(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		oauthtest.GrantDeviceCode:       oauthwire.GrantTypeDeviceCode,
		oauthtest.AuthNone:              oauthwire.AuthMethodNone,
		oauthtest.AuthClientSecretBasic: oauthwire.AuthMethodClientSecretBasic,
		oauthtest.AuthClientSecretPost:  oauthwire.AuthMethodClientSecretPost,
		oauthtest.AuthPrivateKeyJWT:     oauthwire.AuthMethodPrivateKeyJWT,
		oauthtest.PathOAuthDiscovery:    oauthwire.WellKnownOAuth,
		oauthtest.PathOpenIDDiscovery:   oauthwire.WellKnownOpenID,
	} {
		if got != want {
			t.Errorf("oauthtest says %q, the wire format %q", got, want)
		}
	}
	for m, want := range map[oauthtest.ExpiresInMode]string{
		oauthtest.ExpiresInNumber: "number", oauthtest.ExpiresInGarbage: "garbage", 42: "ExpiresInMode(42)",
	} {
		if m.String() != want {
			t.Errorf("ExpiresInMode(%d).String() = %q, want %q", int(m), m.String(), want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	bad := map[string]oauthtest.Config{
		"no id":             {Clients: []oauthtest.Client{{}}},
		"duplicate":         {Clients: []oauthtest.Client{{ID: "a"}, {ID: "a"}}},
		"basic, no secret":  {Clients: []oauthtest.Client{{ID: "a", AuthMethod: oauthtest.AuthClientSecretBasic}}},
		"weak key":          {Clients: []oauthtest.Client{{ID: "a", PublicKey: &small.PublicKey}}},
		"unknown method":    {Clients: []oauthtest.Client{{ID: "a", AuthMethod: "tls_client_auth"}}},
		"relative redirect": {Clients: []oauthtest.Client{{ID: "a", RedirectURIs: []string{"/cb"}}}},
		"bad resource":      {Resources: []string{"orders"}},
	}
	for name, cfg := range bad {
		if s, err := oauthtest.New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	srv := oauthtest.Start(t, oauthtest.Config{})
	if err := srv.Update(func(c *oauthtest.Config) { c.Clients = append(c.Clients, oauthtest.Client{}) }); err == nil {
		t.Error("Update accepted a bad client")
	}
	if got := srv.Config(); len(got.Clients) != 1 || got.Clients[0].ID != oauthtest.DefaultClientID || got.AccessTokenLifetime != time.Hour {
		t.Errorf("config after rejected update: %+v", got)
	}
	srv.Close()
	srv.Close() // idempotent
	if _, err := srv.NewAPI(""); err == nil {
		t.Error("NewAPI on a closed server")
	}
}
