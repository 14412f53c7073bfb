package client

import (
	"context"
	"crypto"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// Grant selects how the client obtains its first token.
type Grant string

// Grants.
const (
	// GrantLogin: a user logs in (Client.Login: browser with PKCE, or device
	// flow); the refresh token then keeps the session alive. The default.
	GrantLogin Grant = "login"
	// GrantClientCredentials: the client authenticates as itself (server
	// jobs); no user, no refresh token, a new token per lifetime.
	GrantClientCredentials Grant = "client_credentials"
)

// Endpoints are the authorization server's URLs. Fields left empty are
// filled from discovery when Options.Issuer is set.
type Endpoints struct {
	AuthURL       string // authorization endpoint (browser login)
	TokenURL      string // token endpoint. Required unless discovered.
	DeviceAuthURL string // device authorization endpoint (RFC 8628)
	RevocationURL string // revocation endpoint (RFC 7009), used by Logout
	// PARURL is the pushed authorization request endpoint (RFC 9126), used
	// by browser logins when the server requires it or Options.UsePAR is
	// set. Discovery fills it from pushed_authorization_request_endpoint.
	PARURL string
}

// HTTPSettings configures the HTTP clients tokenward builds, for the
// authorization server and for the APIs. All fields are optional.
type HTTPSettings struct {
	// Timeout bounds every call to the authorization server, retries
	// included. Zero means 30 s.
	Timeout time.Duration
	// RetryBudget is the total time, counted from the start of one call to
	// the authorization server, within which a retry may start: a retry
	// whose wait would end later is not made, and the call returns its last
	// answer or error. It never cuts an attempt short (Timeout does). Zero
	// means 20 s.
	RetryBudget time.Duration
	// RetryWaitMin and RetryWaitMax bound one wait between retries; a
	// Retry-After longer than RetryWaitMax ends the call with a
	// *RateLimitError. Zero means 200 ms and 5 s.
	RetryWaitMin, RetryWaitMax time.Duration
	// RetryMax is the number of retries of a replayable call. Zero means 3;
	// negative means none.
	RetryMax int
	// TLSConfig is used for the authorization server and the APIs (for
	// example a private CA, or a client certificate for mTLS). Nil means
	// the system defaults.
	TLSConfig *tls.Config
	// Proxy selects a proxy per request. Nil means
	// http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)
	// Transport, when set, is the base transport for every request and
	// TLSConfig and Proxy are ignored. For tests and special setups.
	Transport http.RoundTripper
}

// Options describes one client of one authorization server. [New] hands a
// zero Options to its option functions, which set the fields they need;
// the result is copied and never modified afterwards.
type Options struct {
	// Issuer is the authorization server's issuer URL, used for discovery
	// (RFC 8414, then OpenID Connect) and checked against the document.
	// Either Issuer or Endpoints.TokenURL is required.
	Issuer string
	// Endpoints overrides or replaces discovery. Optional with Issuer.
	Endpoints Endpoints

	// ClientID is the registered client identifier. Required.
	ClientID string
	// ClientSecret for client_secret_basic / client_secret_post. Optional.
	ClientSecret string
	// PrivateKey (RSA of 2048 bits or more, or ECDSA P-256/384/521) for
	// private_key_jwt. Optional.
	PrivateKey crypto.Signer
	// KeyID is the "kid" header of private_key_jwt assertions. Optional.
	KeyID string
	// AssertionAudience is the "aud" claim of private_key_jwt assertions.
	// Empty means the issuer identifier (Issuer), or the token endpoint URL
	// without an Issuer: the issuer alone is what guards against audience
	// injection. Set it (usually to the token endpoint URL) only for a
	// server that accepts nothing else.
	AssertionAudience string
	// AuthMethod is the token-endpoint client authentication. Empty means:
	// from discovery's token_endpoint_auth_methods_supported and the
	// credentials given (private_key_jwt with a PrivateKey, basic or post
	// with a ClientSecret, none otherwise). Never auto-detected by trial.
	AuthMethod AuthMethod

	// Grant is GrantLogin (default) or GrantClientCredentials.
	Grant Grant
	// Scopes requested. Optional.
	Scopes []string
	// Resources are RFC 8707 resource indicators (an API's identifier,
	// usually its base URL) that the login covers. Optional. With exactly
	// one, the default token is requested for it (its audience) and, unless
	// APIOrigins says otherwise, goes to its origin only. With several, a
	// server issues one audience per access token, so the default token is
	// requested without a resource indicator and belongs to none of them:
	// it goes to no API origin unless APIOrigins names some, and each API
	// gets its own token, sent only to its own origin, through
	// [Client.ForResource]. ForResource also adds APIs after New; list
	// them here too, so that the login's authorization covers them.
	Resources []string
	// APIOrigins are the origins (scheme://host[:port]) the default token is
	// sent to by [Client.HTTPClient]. Optional when Resources has exactly
	// one resource: empty means that resource's origin. Otherwise empty
	// means none, and HTTPClient fails with ErrInvalidConfig: with several
	// Resources use ForResource for each API instead, or name here the
	// origins that accept the default token. Requests to other origins go
	// out without a token (see RejectOtherOrigins).
	APIOrigins []string
	// RejectOtherOrigins makes the HTTP clients of [Client.HTTPClient] and
	// [Resource.HTTPClient] refuse requests to origins outside their
	// token's: such a request fails with ErrOriginNotAllowed and is never
	// sent, redirects to another origin included. Optional; default false:
	// such requests go out without a token, as a plain *http.Client would
	// send them.
	RejectOtherOrigins bool
	// AuthParams are extra parameters of every browser login's
	// authorization request, such as prompt, login_hint, acr_values,
	// max_age, ui_locales or Auth0's audience. DeviceAuthParams are those
	// of the device authorization request (WithDevice), TokenParams those
	// of every token request of the credential (authorization_code,
	// device_code, refresh_token, client_credentials; for example an
	// audience the server wants on each). Per login,
	// LoginOptions.AuthParams (or [WithAuthParam]) adds to AuthParams or
	// DeviceAuthParams and replaces their values of the same name. New
	// copies them; it refuses with ErrInvalidConfig a name or value with
	// control characters, and the parameters tokenward sets itself
	// (state, code_challenge, redirect_uri, client_id, grant_type, ...),
	// scope and resource among them: set Scopes and Resources instead.
	// Clients of one credential share its token caches, and with them the
	// TokenParams of the first one: a token for another audience needs its
	// own Profile. Optional.
	AuthParams, DeviceAuthParams, TokenParams url.Values
	// UsePAR sends every browser login's authorization parameters to the
	// pushed authorization request endpoint (RFC 9126) first, so that the
	// browser's URL carries only client_id and a request_uri. tokenward
	// does so anyway when discovery says
	// require_pushed_authorization_requests. It needs Endpoints.PARURL or
	// a discovery document that names the endpoint; Login fails with
	// ErrInvalidConfig otherwise. Optional.
	UsePAR bool

	// DPoP binds the tokens to a key of this client (RFC 9449,
	// Demonstrating Proof of Possession): every token request and every
	// API request carries a proof signed with it, and a stolen token is
	// useless without the key. tokenward generates an ES256 key at the
	// first login (or first client-credentials token), keeps it with the
	// credential in the store, uses it for every refresh, and deletes it
	// at Logout. The server must answer with DPoP tokens (see
	// DPoPAllowDowngrade). Optional; default false: Bearer tokens. Setting
	// DPoPKey turns it on too.
	DPoP bool
	// DPoPKey is the application's own DPoP key instead of a generated
	// one: ECDSA P-256/384/521, Ed25519, or RSA of 2048 bits or more. A
	// key of the standard library's types is kept with the credential
	// like a generated one; another crypto.Signer (a hardware key) is
	// used as it is and never stored. It is used for new logins and
	// tokens: a credential already stored with a key keeps using that key
	// (its refresh token is bound to it) until Logout. Optional.
	DPoPKey crypto.Signer
	// DPoPAlg is the proof algorithm of DPoPKey: for an RSA key "PS256"
	// (the default) or "RS256"; for other keys it must be empty or the one
	// the key implies (ES256, ES384, ES512, EdDSA). New fails with
	// ErrInvalidConfig otherwise, and with ErrDPoPAlgorithm when the
	// server's discovery document lists the algorithms it accepts for
	// proofs and this one is not among them (when the server cannot be
	// reached at New, the first operation that fetches the document fails
	// so instead, before any token request). Optional.
	DPoPAlg string
	// DPoPAllowDowngrade accepts a Bearer token in answer to a DPoP token
	// request, from a server that does not do DPoP; such tokens are then
	// sent as Bearer tokens. Optional; default false: such an answer is
	// refused with ErrUnsupportedTokenType.
	DPoPAllowDowngrade bool

	// AllowInsecureLoopback permits http:// URLs whose host is a loopback
	// address (127.0.0.0/8, ::1, localhost), for local development and tests.
	AllowInsecureLoopback bool

	// Profile separates several accounts for one issuer and client.
	// Optional ("default").
	Profile string
	// Store is where tokens live. Nil means store.Open with StoreOptions.
	// Open Clients of one credential must use one store: the same value, or
	// handles that store.Open made for one backend ([store.SameBackend]:
	// the same directory or keychain, lock directory and passphrase); New
	// fails with ErrInvalidConfig otherwise.
	Store store.Store
	// StoreMode chooses the storage mode of the store opened when Store is
	// nil, in one field: store.ModeMemory for a server job that keeps
	// nothing across runs, store.ModeEncryptedFile for a headless machine
	// (with a passphrase in StoreOptions or $TOKENWARD_PASSPHRASE), ...
	// Empty means the TOKENWARD_STORE environment variable, then
	// store.ModeKeychain. A mode set by StoreOptions wins over it.
	StoreMode store.Mode
	// StoreOptions configure the store opened when Store is nil (mode,
	// directories, passphrase, ...). The mode is chosen by option (these,
	// then StoreMode), then the TOKENWARD_STORE environment variable, then
	// "keychain".
	StoreOptions []func(*store.Options)

	// AccessToken, when set, is used as is for every request to APIOrigins
	// (or, when that is empty and Resources has exactly one resource, to
	// its origin): no store is opened, nothing is refreshed, the keychain
	// is never touched (for CI and containers, which often have no
	// keychain, and where a prompt to unlock one would hang the job).
	AccessToken string
	// AccessTokenEnv names an environment variable that, when set and
	// AccessToken is empty, supplies AccessToken (for example
	// "TOKENWARD_ACCESS_TOKEN", as examples/cli does). Empty means no
	// variable is read: a token in the environment goes only to the Clients
	// that ask for it by name, never to every Client of the process.
	AccessTokenEnv string

	// HTTP configures the HTTP clients. Optional.
	HTTP HTTPSettings

	// RedirectHost is the loopback address of the browser login's redirect
	// listener: "127.0.0.1" (default) or "::1". Anything else is refused.
	RedirectHost string
	// LoginTimeout bounds a browser login. Zero means 5 minutes.
	LoginTimeout time.Duration
	// OpenBrowser opens the authorization URL. Nil means the system browser
	// (github.com/cli/browser). The URL is always printed to Prompt too.
	OpenBrowser func(url string) error
	// DevicePrompt shows a device-flow code to the user and returns when ctx
	// ends. Nil means a text prompt with a QR code on Prompt.
	DevicePrompt func(ctx context.Context, d DeviceCode)
	// Prompt receives the human-facing login messages. Nil means os.Stderr.
	Prompt io.Writer

	// Logger receives diagnostic logs; secrets never reach it. Nil means
	// no logging.
	Logger *slog.Logger
	// Events receives one Event per noteworthy change (token refreshed,
	// refresh failed, re-authentication required, clock skew, ...), never
	// with a secret, for this Client and every other open Client of the same
	// credential. It is called synchronously, sometimes while a token
	// operation holds the credential's lock: keep it fast, and never call
	// the Client (Token, Login, Logout, Close, ...) from it; hand such work
	// to another goroutine. Optional.
	Events func(Event)

	// RefreshOptions tune the token caches (timing, backoff, ...). Persister,
	// Logger and OnEvent are set by the client before these run. Optional.
	RefreshOptions []func(*refresh.Options)
}
