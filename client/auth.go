package client

import (
	"crypto"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
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
// grant twice and replays codes and refresh tokens (PITFALLS O-08).
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
			return fmt.Errorf("client: %w: private_key_jwt: %w", ErrInvalidConfig, err)
		}
		form.Set("client_id", a.id)
		form.Set("client_assertion_type", oauthwire.ClientAssertionType)
		form.Set("client_assertion", jwt)
	default:
		return fmt.Errorf("client: %w: unknown client authentication method %q", ErrInvalidConfig, a.method)
	}
	return nil
}
