package client

import (
	"crypto"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// AuthMethod is how the client authenticates to the token endpoint
// (RFC 7591 token_endpoint_auth_method values).
type AuthMethod string

// Client authentication methods.
const (
	// AuthNone: a public client (desktop and CLI apps); only client_id is sent.
	AuthNone AuthMethod = "none"
	// AuthSecretBasic: client_id and client_secret in an HTTP Basic header.
	AuthSecretBasic AuthMethod = "client_secret_basic"
	// AuthSecretPost: client_id and client_secret in the form body.
	AuthSecretPost AuthMethod = "client_secret_post"
	// AuthPrivateKeyJWT: a JWT signed with the client's RSA or EC key
	// (RFC 7523), freshly made for every request.
	AuthPrivateKeyJWT AuthMethod = "private_key_jwt"
)

// clientAuth applies one authentication method to a request. It is set
// explicitly, never auto-detected: x/oauth2's detection sends every failing
// grant twice, once per style, and so presents single-use codes and
// refresh tokens twice (the second attempt fails, or gets the whole token
// family revoked).
type clientAuth struct {
	method   AuthMethod
	id       string
	secret   string
	key      crypto.Signer
	keyID    string
	audience string // for private_key_jwt: the token endpoint
	now      func() time.Time
}

// apply adds the client's credentials to form and header.
func (a clientAuth) apply(form url.Values, header http.Header) error {
	switch a.method {
	case AuthNone:
		form.Set("client_id", a.id)
	case AuthSecretBasic:
		header.Set("Authorization", oauthwire.BasicAuth(a.id, a.secret))
	case AuthSecretPost:
		form.Set("client_id", a.id)
		form.Set("client_secret", a.secret)
	case AuthPrivateKeyJWT:
		jwt, err := oauthwire.ClientAssertion(a.key, a.keyID, a.id, a.audience, a.now(), time.Minute)
		if err != nil {
			return failure(opConfig, "private_key_jwt: "+plain(err), ErrInvalidConfig, err)
		}
		form.Set("client_id", a.id)
		form.Set("client_assertion_type", oauthwire.ClientAssertionType)
		form.Set("client_assertion", jwt)
	default:
		return failure(opConfig, fmt.Sprintf("unknown client authentication method %q", a.method), ErrInvalidConfig)
	}
	return nil
}

// chooseAuthMethod settles the client authentication method: the configured
// one, else one the server supports for the credentials given. It is never
// found by trial and error, for the reason given at clientAuth.
func (g *grant) chooseAuthMethod() error {
	m := g.cfg.AuthMethod
	supported := func(m AuthMethod) bool {
		return g.disco == nil || g.disco.SupportsAuthMethod(string(m))
	}
	if m == "" {
		switch {
		case g.cfg.PrivateKey != nil:
			m = AuthPrivateKeyJWT
		case g.cfg.ClientSecret != "" && supported(AuthSecretBasic):
			m = AuthSecretBasic
		case g.cfg.ClientSecret != "" && supported(AuthSecretPost):
			m = AuthSecretPost
		case g.cfg.ClientSecret != "":
			m = AuthSecretBasic
		default:
			m = AuthNone
		}
	}
	if g.disco != nil && len(g.disco.TokenEndpointAuthMethodsSupported) > 0 && !supported(m) {
		// The list comes from the server's discovery document.
		list := redact.Truncate(strings.Join(g.disco.TokenEndpointAuthMethodsSupported, ", "), 200)
		return failure(opConfig, fmt.Sprintf("the server does not support client authentication %q (it supports %s)", m, list), ErrInvalidConfig)
	}
	if m == AuthNone && g.cfg.Grant == GrantClientCredentials {
		return failure(opConfig, "client credentials need client authentication (a ClientSecret or a PrivateKey)", ErrInvalidConfig)
	}
	g.method = m
	return nil
}

// authFor returns the client authentication for a request to endpoint.
func (g *grant) authFor(endpoint string) clientAuth {
	return clientAuth{method: g.method, id: g.cfg.ClientID, secret: g.cfg.ClientSecret,
		key: g.cfg.PrivateKey, keyID: g.cfg.KeyID, audience: g.assertionAudience(), now: g.now}
}

// assertionAudience is the "aud" of private_key_jwt assertions: the
// configured one, else the issuer identifier, else (without an issuer) the
// token endpoint. The issuer, not the endpoint the assertion is sent to:
// an assertion whose audience is an endpoint URL can be replayed by a
// malicious server that names another server's endpoint in its metadata
// (audience injection), and the update of RFC 7523 under way in the IETF
// asks clients for the issuer alone.
func (g *grant) assertionAudience() string {
	switch {
	case g.cfg.AssertionAudience != "":
		return g.cfg.AssertionAudience
	case g.issuer != "":
		return g.issuer
	}
	return g.endpoints.TokenURL
}

// authHint says, for a rejected client, which authentication was used and
// how it was chosen, so that a client registered for another method knows
// to set Options.AuthMethod: a server lists methods in its discovery
// document, but a client is registered for one of them.
func (g *grant) authHint() string {
	h := fmt.Sprintf("the client authenticated with %s", g.method)
	if g.cfg.AuthMethod == "" {
		h += " (chosen because Options.AuthMethod is empty"
		if g.disco != nil && len(g.disco.TokenEndpointAuthMethodsSupported) > 0 {
			h += "; the server lists " + redact.Terminal(redact.Truncate(strings.Join(g.disco.TokenEndpointAuthMethodsSupported, ", "), 200))
		}
		h += ")"
	}
	h += "; if the client is registered for another method, set Options.AuthMethod"
	if g.method == AuthPrivateKeyJWT && g.cfg.AssertionAudience == "" && g.issuer != "" {
		h += "; the assertion's audience was the issuer: a server that accepts only its token endpoint there needs Options.AssertionAudience"
	}
	return h
}
