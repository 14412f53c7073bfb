package oauthtest

import (
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
)

// Grant types: the values of the grant_type parameter the token endpoint
// accepts, and the names Client.Grants and Stats.Grants use.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Client authentication methods (Client.AuthMethod), named as in the
// token_endpoint_auth_method registry of RFC 7591.
const (
	// AuthNone is a public client: it sends its client_id and no secret.
	AuthNone = "none"
	// AuthClientSecretBasic sends the client secret in an HTTP Basic
	// Authorization header.
	AuthClientSecretBasic = "client_secret_basic"
	// AuthClientSecretPost sends the client secret as the client_secret
	// form parameter.
	AuthClientSecretPost = "client_secret_post"
	// AuthPrivateKeyJWT sends a JWT signed with the client's private key
	// (RFC 7523), checked against Client.PublicKey.
	AuthPrivateKeyJWT = "private_key_jwt"
)

// DefaultClientID is the public client registered when Config.Clients is
// empty: auth method none, every grant but client_credentials, redirect
// URIs http://127.0.0.1/callback and http://[::1]/callback (any port).
const DefaultClientID = "tokenward-demo"

// DefaultSubject is the end user every login is approved as, unless
// Config.Subject says otherwise.
const DefaultSubject = "oauthtest-user"

// Client is a client registered at the server. Printing a Client (fmt,
// log/slog) shows its Secret only as [REDACTED].
type Client struct {
	// ID is the client_id. Required.
	ID string
	// Secret is the client secret of client_secret_basic and
	// client_secret_post clients.
	Secret string
	// AuthMethod is how the client must authenticate at the token,
	// device authorization and revocation endpoints (AuthNone, ...).
	// Presenting any other method, or two at once, fails with
	// invalid_client: a client that tries methods in turn until one works
	// is caught. Optional: defaults to AuthPrivateKeyJWT when PublicKey is
	// set, AuthClientSecretBasic when Secret is set, else AuthNone.
	AuthMethod string
	// PublicKey verifies private_key_jwt assertions: an *rsa.PublicKey
	// (RS256, at least 2048 bits) or an *ecdsa.PublicKey (ES256, ES384 or
	// ES512 by curve).
	PublicKey crypto.PublicKey
	// RedirectURIs are the registered redirect URIs. A loopback URI
	// (http://127.0.0.1/... or http://[::1]/...) matches any port (RFC 8252
	// section 7.3); others match exactly.
	RedirectURIs []string
	// Scopes the client may request. Optional: empty allows any scope.
	Scopes []string
	// Grants the client may use (GrantAuthorizationCode, ...). Optional:
	// empty allows every grant, except that client_credentials needs a
	// confidential client.
	Grants []string
}

// method returns the client's authentication method, defaults applied.
func (c *Client) method() string {
	switch {
	case c.AuthMethod != "":
		return c.AuthMethod
	case c.PublicKey != nil:
		return AuthPrivateKeyJWT
	case c.Secret != "":
		return AuthClientSecretBasic
	}
	return AuthNone
}

// allowsGrant reports whether the client may use grant type g.
func (c *Client) allowsGrant(g string) bool {
	if g == GrantClientCredentials && c.method() == AuthNone {
		return false
	}
	return len(c.Grants) == 0 || slices.Contains(c.Grants, g)
}

// ExpiresInMode selects how token responses carry expires_in, to test a
// client against the shapes real servers send. Whatever the mode, the
// server itself expires access tokens after Config.AccessTokenLifetime.
type ExpiresInMode int

// The shapes of expires_in, shown for a one-hour lifetime.
const (
	ExpiresInNumber   ExpiresInMode = iota // 3600 (the default)
	ExpiresInString                        // "3600"
	ExpiresInFloat                         // 3599.5
	ExpiresInOmit                          // absent
	ExpiresInNull                          // null
	ExpiresInZero                          // 0
	ExpiresInNegative                      // -3600
	ExpiresInHuge                          // 2^40
	ExpiresInGarbage                       // "soon"
)

var expiresInNames = [...]string{"number", "string", "float", "omit", "null", "zero", "negative", "huge", "garbage"}

// String returns the mode's name ("number", "omit", ...).
func (m ExpiresInMode) String() string {
	if m >= 0 && int(m) < len(expiresInNames) {
		return expiresInNames[m]
	}
	return "ExpiresInMode(" + strconv.Itoa(int(m)) + ")"
}

// Config configures a Server. The zero value is a well-behaved,
// RFC-conformant server with one public client (DefaultClientID), one-hour
// access tokens and rotating refresh tokens with reuse detection. Every
// field can be changed later with Server.Update, except TLS, InMemory and
// Logger. Printing a Config (fmt, log/slog) shows client secrets only as
// [REDACTED].
type Config struct {
	// Clients are the registered clients. Optional: empty registers the
	// public DefaultClientID.
	Clients []Client

	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1, ::1
	// and localhost; clients trust it through Server.CertPool, TLSConfig or
	// HTTPClient.
	TLS bool
	// InMemory starts no listener: the server, its APIs and its trap are
	// reachable only through Server.Transport. Their URLs still name
	// 127.0.0.1 ports (reserved and released at once, so dialing them fails
	// fast). Create such a server inside a testing/synctest bubble and the
	// whole exchange, clock included, runs on the bubble's fake time.
	InMemory bool
	// Logger receives one Debug line per request (endpoint, grant, status,
	// fault kind; never a secret). Optional: default discards.
	Logger *slog.Logger

	// Now is the server's clock. Optional: default time.Now.
	Now func() time.Time
	// ClockOffset is added to Now: the server's clock runs ahead (positive)
	// or behind. Token expiry, the Date header and every expiry check use
	// the offset clock.
	ClockOffset time.Duration

	// AccessTokenLifetime is the lifetime of access tokens. Optional:
	// default one hour.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime is the lifetime of each refresh token. Optional:
	// zero means refresh tokens do not expire.
	RefreshTokenLifetime time.Duration
	// AccessTokenSize is the approximate length of access tokens in bytes.
	// Optional: default 800.
	AccessTokenSize int
	// TokenType is the token_type sent ("Bearer", "bearer", "DPoP", "N_A").
	// Optional: default "Bearer".
	TokenType string
	// OmitTokenType leaves token_type out of token responses.
	OmitTokenType bool
	// ExpiresIn selects the shape of expires_in in token responses.
	ExpiresIn ExpiresInMode
	// SendRefreshTokenExpiresIn adds refresh_token_expires_in when refresh
	// tokens expire (RefreshTokenLifetime > 0).
	SendRefreshTokenExpiresIn bool
	// IDToken issues an id_token on every user grant; without it an
	// id_token is issued only when the scope contains "openid".
	IDToken bool
	// Subject is the user every login is approved as. Optional: default
	// DefaultSubject.
	Subject string
	// OmitScope leaves scope out of token responses.
	OmitScope bool
	// FormResponse sends token responses form-encoded
	// (application/x-www-form-urlencoded), as GitHub does by default.
	FormResponse bool

	// DisableRotation makes refresh tokens reusable (a server that does
	// not rotate): refreshing does not issue a new refresh token.
	DisableRotation bool
	// EchoRefreshToken, with DisableRotation, sends the same refresh token
	// back in every refresh response (some servers do, most omit it).
	EchoRefreshToken bool
	// ReuseGrace lets a rotated refresh token be used again for this long
	// after its first use (the overlap some providers allow, so that a
	// client whose response was lost can retry); each such reuse mints new
	// tokens and counts in Stats.GraceReuses. Outside the window a reuse
	// revokes the whole token family (unless DisableReuseDetection).
	ReuseGrace time.Duration
	// DisableReuseDetection answers a reused refresh token with
	// invalid_grant without revoking its family.
	DisableReuseDetection bool
	// RefuseAccessTokenRevocation makes the revocation endpoint answer an
	// access token with 400 unsupported_token_type (RFC 7009 section 2.2.1),
	// as servers that issue self-contained JWT access tokens often do;
	// refresh tokens are revoked as usual.
	RefuseAccessTokenRevocation bool

	// Resources are the allowed RFC 8707 resource indicators. Optional:
	// empty allows any absolute URI. Every API's resource is allowed as
	// well.
	Resources []string
	// DefaultResource is the audience of access tokens requested without a
	// resource parameter (when the grant is not bound to exactly one
	// resource). Optional: when empty, the first API created sets it.
	DefaultResource string

	// OmitCallbackIss leaves iss out of authorization responses (RFC 9207),
	// and discovery then does not claim to send it.
	OmitCallbackIss bool
	// CallbackIss replaces the iss sent in authorization responses, to
	// test a client's defence against mix-up attacks. Optional.
	CallbackIss string
	// AuthorizeError makes /authorize answer with this error code
	// ("access_denied") instead of a code.
	AuthorizeError string
	// NoSession makes the server act as if the user had no session with
	// it: an authorization request with prompt=none is answered
	// login_required (OpenID Connect Core 1.0 section 3.1.2.6), as a real
	// server does when it may not ask the user to sign in. Other requests
	// are approved as usual.
	NoSession bool
	// RequirePAR makes discovery say require_pushed_authorization_requests
	// and the authorization endpoint refuse (error=invalid_request) every
	// request that does not name a pushed one (RFC 9126 section 5).
	RequirePAR bool
	// PARLifetime is the lifetime of a pushed request's request_uri.
	// Optional: default one minute.
	PARLifetime time.Duration
	// CodeLifetime is the lifetime of authorization codes. Optional:
	// default one minute.
	CodeLifetime time.Duration

	// DeviceInterval is the polling interval advertised and enforced
	// (polling faster is answered with slow_down and adds 5 s for good).
	// Optional: default 5 s; rounded to whole seconds on the wire.
	DeviceInterval time.Duration
	// OmitDeviceInterval leaves interval out of device authorization
	// responses; DeviceIntervalZero sends 0. Either way 5 s is enforced, as
	// RFC 8628 tells clients to assume.
	OmitDeviceInterval, DeviceIntervalZero bool
	// DeviceCodeLifetime is the device code's expires_in. Optional: default
	// ten minutes.
	DeviceCodeLifetime time.Duration
	// DevicePendingPolls is how many polls are answered
	// authorization_pending before the grant is approved automatically.
	DevicePendingPolls int
	// DeviceManualApproval disables automatic approval: approve with
	// Server.ApproveDevice or the /device page.
	DeviceManualApproval bool
	// DeviceNoIntervalCheck stops answering early polls with slow_down.
	DeviceNoIntervalCheck bool

	// DiscoveryIssuer replaces the issuer in discovery documents, to test
	// a client's issuer check. Optional.
	DiscoveryIssuer string
	// OIDCDiscoveryOnly serves the discovery document only at
	// PathOpenIDDiscovery, as an OpenID provider without RFC 8414 metadata
	// does: PathOAuthDiscovery answers 404 (and still counts in
	// Stats.Discovery).
	OIDCDiscoveryOnly bool
	// DisabledEndpoints lists endpoint names (EndpointRevocation, ...) that
	// are not advertised and answer 404.
	DisabledEndpoints []string

	// DPoP turns DPoP (RFC 9449) on: DPoPOptional or DPoPRequired. See
	// the package documentation's DPoP section. Optional: default DPoPOff,
	// which ignores DPoP headers.
	DPoP DPoPMode
	// DPoPSigningAlgs are the proof algorithms accepted (and advertised as
	// dpop_signing_alg_values_supported): any of ES256, ES384, ES512,
	// EdDSA (Ed25519), RS256, RS384, RS512, PS256, PS384, PS512. Optional:
	// default DefaultDPoPSigningAlgs.
	DPoPSigningAlgs []string
	// DPoPNonceAS makes the token and PAR endpoints demand the server's
	// current nonce in every proof (RFC 9449 section 8): a proof without
	// it is answered use_dpop_nonce with a DPoP-Nonce header.
	DPoPNonceAS bool
	// DPoPNonceAPI makes the APIs (and userinfo) demand their current
	// nonce (RFC 9449 section 9), a value distinct from the token
	// endpoint's.
	DPoPNonceAPI bool
	// DPoPProofWindow is how old (by iat, on the server's clock) a proof
	// may be; its jti is remembered that long. Optional: default 60 s.
	DPoPProofWindow time.Duration
	// DPoPProofSkew is how far in the future a proof's iat may be, for
	// clients whose clock runs ahead. Optional: default 5 s.
	DPoPProofSkew time.Duration
}

// clone returns a copy of c whose slices are its own.
func (c Config) clone() Config {
	c.Clients = slices.Clone(c.Clients)
	c.Resources = slices.Clone(c.Resources)
	c.DisabledEndpoints = slices.Clone(c.DisabledEndpoints)
	c.DPoPSigningAlgs = slices.Clone(c.DPoPSigningAlgs)
	return c
}

// setConfig validates cfg, applies defaults and installs it. The caller
// holds s.mu or has not published s yet.
func (s *Server) setConfig(cfg Config) error {
	cfg = cfg.clone()
	if len(cfg.Clients) == 0 {
		cfg.Clients = []Client{{
			ID:           DefaultClientID,
			RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"},
		}}
	}
	clients := map[string]*Client{}
	for i := range cfg.Clients {
		c := &cfg.Clients[i]
		if c.ID == "" {
			return errors.New("oauthtest: client without ID")
		}
		if _, dup := clients[c.ID]; dup {
			return fmt.Errorf("oauthtest: client %q registered twice", c.ID)
		}
		switch c.method() {
		case AuthNone:
		case AuthClientSecretBasic, AuthClientSecretPost:
			if c.Secret == "" {
				return fmt.Errorf("oauthtest: client %q: %s needs a Secret", c.ID, c.method())
			}
		case AuthPrivateKeyJWT:
			if _, err := oauthwire.AssertionAlg(c.PublicKey); err != nil {
				return fmt.Errorf("oauthtest: client %q: %w", c.ID, err)
			}
		default:
			return fmt.Errorf("oauthtest: client %q: unknown auth method %q", c.ID, c.AuthMethod)
		}
		for _, u := range c.RedirectURIs {
			if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" || p.Fragment != "" {
				return fmt.Errorf("oauthtest: client %q: redirect URI %q is not absolute", c.ID, u)
			}
		}
		clients[c.ID] = c
	}
	for _, r := range cfg.Resources {
		if !validResource(r) {
			return fmt.Errorf("oauthtest: resource %q is not an absolute URI without fragment", r)
		}
	}
	if cfg.DefaultResource != "" && !validResource(cfg.DefaultResource) {
		return fmt.Errorf("oauthtest: default resource %q is not an absolute URI without fragment", cfg.DefaultResource)
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = time.Hour
	}
	if cfg.RefreshTokenLifetime < 0 {
		cfg.RefreshTokenLifetime = 0
	}
	if cfg.AccessTokenSize <= 0 {
		cfg.AccessTokenSize = 800
	}
	if cfg.TokenType == "" {
		cfg.TokenType = "Bearer"
	}
	if cfg.Subject == "" {
		cfg.Subject = DefaultSubject
	}
	if cfg.PARLifetime <= 0 {
		cfg.PARLifetime = time.Minute
	}
	if cfg.CodeLifetime <= 0 {
		cfg.CodeLifetime = time.Minute
	}
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = oauthwire.DefaultDeviceInterval
	}
	if cfg.DeviceCodeLifetime <= 0 {
		cfg.DeviceCodeLifetime = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DPoP < DPoPOff || cfg.DPoP > DPoPRequired {
		return errDPoPConfig("unknown DPoP mode " + cfg.DPoP.String())
	}
	if cfg.DPoP != DPoPOff && len(cfg.DPoPSigningAlgs) == 0 {
		cfg.DPoPSigningAlgs = slices.Clone(DefaultDPoPSigningAlgs)
	}
	for _, a := range cfg.DPoPSigningAlgs {
		if !slices.Contains(dpopSupportedAlgs, a) {
			// Never "none" nor a MAC: a proof must be signed with a
			// private key only the client holds.
			return errDPoPConfig("DPoP signing alg " + strconv.Quote(a) + " is not a supported asymmetric algorithm")
		}
	}
	if cfg.DPoPProofWindow <= 0 {
		cfg.DPoPProofWindow = 60 * time.Second
	}
	if cfg.DPoPProofSkew <= 0 {
		cfg.DPoPProofSkew = 5 * time.Second
	}
	s.cfg = cfg
	s.clients = clients
	return nil
}
