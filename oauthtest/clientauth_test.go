package oauthtest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestClientAuthentication(t *testing.T) {
	t.Parallel()
	basic, post := confidential("basic"), confidential("post")
	post.AuthMethod = oauthtest.AuthClientSecretPost
	special := oauthtest.Client{ID: "a b:c", Secret: "p@ss:w%rd+/=", AuthMethod: oauthtest.AuthClientSecretBasic}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{basic, post, special, public("pub")}})
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := []struct {
		name string
		a    auth
		code string // "" = success
	}{
		{"basic", auth{id: "basic", secret: basic.Secret}, ""},
		{"basic with special characters", auth{id: special.ID, secret: special.Secret}, ""},
		{"post", auth{id: "post", secret: post.Secret, post: true}, ""},
		{"basic client falls back to post", auth{id: "basic", secret: basic.Secret, post: true}, "invalid_client"},
		{"post client sends basic", auth{id: "post", secret: post.Secret}, "invalid_client"},
		{"wrong secret", auth{id: "basic", secret: "nope"}, "invalid_client"},
		{"unknown client", auth{id: "ghost", secret: "x"}, "invalid_client"},
		{"no authentication", auth{id: "basic"}, "invalid_client"},
		{"public client, client credentials", auth{id: "pub"}, "unauthorized_client"},
	}
	for _, c := range cases {
		tok, err := tokenReq(t, srv, nil, c.a, cc)
		if c.code == "" {
			if err != nil || tok.AccessToken == "" {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if got := oauthCode(err); got != c.code {
			t.Errorf("%s: code %q (%v), want %q", c.name, got, err, c.code)
		}
	}
	// Two methods at once.
	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {basic.Secret}}
	if _, err := tokenReq(t, srv, nil, auth{id: "basic", secret: basic.Secret}, form); oauthCode(err) != "invalid_request" {
		t.Errorf("two methods: %v", err)
	}
	// A 401 for a basic attempt carries WWW-Authenticate: Basic.
	r, _ := postForm(t, srv, nil, oauthtest.PathToken, auth{id: "basic", secret: "nope"}, cc)
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("401 headers: %d %v", r.status, r.header)
	}
	if got := srv.Stats().ClientAuthFailures; got != 7 {
		t.Errorf("ClientAuthFailures = %d, want 7", got)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, Clients: []oauthtest.Client{
		{ID: "rsa", PublicKey: &rsaKey.PublicKey},
		{ID: "ec", PublicKey: &ecKey.PublicKey},
	}})
	cc := url.Values{"grant_type": {"client_credentials"}}
	assert := func(key crypto.Signer, id, aud string, now time.Time) string {
		a, err := oauthwire.ClientAssertion(key, "", id, aud, now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, c := range []struct {
		name, id string
		key      crypto.Signer
	}{{"rsa", "rsa", rsaKey}, {"ec", "ec", ecKey}} {
		a := assert(c.key, c.id, srv.TokenURL(), clk.Now())
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); oauthCode(err) != "invalid_client" {
			t.Errorf("%s: replayed jti accepted: %v", c.name, err)
		}
		if _, err := tokenReq(t, srv, nil, auth{assertion: assert(c.key, c.id, srv.Issuer(), clk.Now())}, cc); err != nil {
			t.Errorf("%s: issuer as audience: %v", c.name, err)
		}
	}
	bad := map[string]string{
		"wrong key":        assert(other, "ec", srv.TokenURL(), clk.Now()),
		"wrong audience":   assert(ecKey, "ec", "https://elsewhere.example/token", clk.Now()),
		"expired":          assert(ecKey, "ec", srv.TokenURL(), clk.Now().Add(-10*time.Minute)),
		"other client key": assert(rsaKey, "ec", srv.TokenURL(), clk.Now()),
		"garbage":          "a.b.c",
	}
	for name, a := range bad {
		if _, err := tokenReq(t, srv, nil, auth{assertion: a}, cc); oauthCode(err) != "invalid_client" {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A secret instead of the assertion is the wrong method.
	if _, err := tokenReq(t, srv, nil, auth{id: "ec", secret: "x"}, cc); oauthCode(err) != "invalid_client" {
		t.Errorf("secret for a private_key_jwt client: %v", err)
	}
}
