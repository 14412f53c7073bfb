// Package client is the front door of tokenward: it turns one [Options]
// into an authenticated *http.Client, with discovery, login flows, status
// and logout. The other packages (store, refresh, transport) are its parts;
// most programs need only this one.
//
// # From Options to logout
//
// [New] takes option functions that set the fields of [Options], checks
// them, opens the token store and runs discovery when Issuer is set (RFC
// 8414, then OpenID Connect). It sends no token request. The discovery
// document is kept in the store: a later process takes it from there
// (fetching it again in the background once it is an hour old), so a
// program with a valid stored token starts and makes its first API call
// without a single request to the authorization server, and Status and
// the local half of Logout work while the server is down. With the server
// down and no document kept, New still returns a Client, and the first
// operation that needs the server asks for the document again.
//
//	c, err := client.New(ctx, func(o *client.Options) {
//		o.Issuer = "https://login.example.com"
//		o.ClientID = "my-cli" // a public client: PKCE, no secret
//		o.Scopes = []string{"openid", "api.read"}
//		o.Resources = []string{"https://api.example.com"} // the token's audience and only origin
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//
// [Client.Login] signs the user in: in the browser, with PKCE on a loopback
// redirect (the default), or with the device flow, for machines without a
// browser ([WithDevice]: the user approves a short code on another device,
// shown by Options.DevicePrompt or [TextDevicePrompt]). The tokens are
// saved, and read back, before Login returns. A program that should log in
// only the first time calls c.Login(ctx, client.IfNeeded()), which returns
// at once when [Client.LoggedIn]. A server job sets Options.Grant to
// [GrantClientCredentials] with a ClientSecret or PrivateKey and skips
// Login; Options.StoreMode = store.ModeMemory keeps its token in memory only.
//
// Servers often want more on their requests: Options.AuthParams adds
// parameters to the authorization request (prompt, login_hint,
// acr_values, max_age, ui_locales, Auth0's audience),
// Options.DeviceAuthParams to the device authorization request and
// Options.TokenParams to every token request; [WithAuthParam] (or
// LoginOptions.AuthParams) adds or replaces them for one login. The
// parameters tokenward sets itself (state, PKCE, redirect_uri, client
// authentication, scope and resource, ...) are refused with
// ErrInvalidConfig. With Options.UsePAR, or when the server requires it,
// a browser login first pushes its parameters to the server (RFC 9126
// pushed authorization requests, Endpoints.PARURL), so the browser's
// address carries only client_id and a request_uri.
//
// [Client.HTTPClient] returns an *http.Client that attaches the access token
// to requests to the API origins (Options.APIOrigins, or the origin of the
// one resource in Options.Resources) and to no other origin, redirects
// included (with Options.RejectOtherOrigins, requests to other origins
// fail instead of going out without it); the token is refreshed in the
// background before it expires. [Client.ForResource] gives the same for
// another API of the same login (an RFC 8707 resource indicator), with its
// own access token minted from the login's one refresh token. With several
// Options.Resources, each API's client comes from ForResource: the default
// token is then issued for none of them, and HTTPClient fails with
// ErrInvalidConfig unless Options.APIOrigins names its origins.
// [Client.Token] and [Client.TokenSource] hand out the token itself, for
// code that needs it (TokenSource for golang.org/x/oauth2); a DPoP-bound
// token is useless that way, since only HTTPClient adds its proofs.
//
// [Client.Status] says who is logged in, until when, and where tokens are
// kept, from the store alone. [Client.Logout] revokes the tokens at the
// server (RFC 7009) and deletes them locally, even when revocation fails.
// Its [LogoutResult] says what it found and did (nothing stored: nothing
// claimed; an access token the server declines to revoke by policy is
// named, not a failure); a [*LogoutError] says what the server may still
// honour. [Client.Close] releases the Client without logging out.
//
// # Proof of possession (DPoP)
//
// Options.DPoP binds the tokens to a key of this client (RFC 9449): a
// stolen access or refresh token is useless without it. tokenward makes
// an ES256 key at the first login (or the first client-credentials
// token), or uses the application's (Options.DPoPKey: ECDSA P-256,
// P-384 or P-521, Ed25519, or RSA of 2048 bits or more, signing PS256
// unless Options.DPoPAlg asks for RS256), and keeps it with the
// credential in the store, so a restarted process, and every other
// process sharing the store, uses the same key. Logout deletes it with the
// tokens (an application's own key stays the application's to keep). A
// public client's refresh token is bound to the key: a credential whose
// stored key is lost needs a new login. The server must issue token_type
// DPoP (RFC 9449); when its discovery document lists
// dpop_signing_alg_values_supported, the key's algorithm must be among
// them. The key never reaches a log, an error, an event or a
// token handed out by [Client.Token]. Every token request carries a proof
// (the authorization request names the key with dpop_jkt, and a pushed
// one carries a proof as well, so the code is bound to it too), and every
// request of [Client.HTTPClient] and
// [Resource.HTTPClient] to the token's origins carries "Authorization:
// DPoP" and a fresh proof for that request; requests to other origins,
// redirects included, carry neither. A server that asks for a nonce gets
// exactly one more request with it (at the token endpoint the first one
// was refused before its code or refresh token was used) and the nonce is
// kept for the next ones. Proof times follow the server's clock, as its
// answers' Date shows it; an API that refuses a proof's time while its
// Date shows a skew not yet corrected for gets one more request too. A key whose algorithm the server's discovery
// document does not accept fails New with [ErrDPoPAlgorithm]; an API that
// refuses a proof fails the request with [ErrInvalidDPoPProof]; a server
// that answers with a Bearer token is refused with
// [ErrUnsupportedTokenType] unless Options.DPoPAllowDowngrade. An API
// request costs one signature and little else (BENCHMARKS.md, run H).
//
// # Where tokens live
//
// By default in the OS keychain (Secret Service on Linux, the login
// keychain on macOS, Credential Manager on Windows). Without a usable
// keychain New fails with [ErrStoreUnavailable], and with a locked
// Secret Service keyring (or none created yet) with [ErrStoreLocked]; both
// messages name the opt-ins, and tokenward never falls back to a file by
// itself. The
// alternatives are chosen by the application (Options.StoreOptions setting
// store.Options.Mode, or Options.Store) or, when it sets none, by the
// TOKENWARD_STORE environment variable: encrypted-file (a passphrase from
// TOKENWARD_PASSPHRASE), memory (nothing outlives the process: CI, server
// jobs) or plaintext-file (warned about on every run). Options.AccessToken,
// or the variable named by Options.AccessTokenEnv, supplies a fixed token
// instead: no store, no refresh, the keychain never touched.
//
// # Errors
//
// Every error names the operation that failed, then what happened:
//
//	client: discovery: https://login.example.com/.well-known/oauth-authorization-server answered HTTP 404: no discovery document at this URL; ...
//	client: device authorization: authorization server temporarily unavailable: https://login.example.com/device answered HTTP 500
//	client: pushed authorization request: the authorization server rejected the client: https://login.example.com/par answered invalid_client (HTTP 401)
//	client: login: the user must sign in at the authorization server: login_required: ...
//	client: token request (refresh_token): re-authentication required: https://login.example.com/token answered invalid_grant (HTTP 400): Token revoked
//	client: token request (client_credentials): the authorization server rejected the client: ... answered invalid_client (HTTP 401)
//	client: login: no browser callback arrived within 5m0s; the login expired
//	client: logout: incomplete: not revoked at the server: refresh token; local tokens deleted (revocation: ...)
//
// Messages never hold a secret, and what came from the server in them is
// sanitized: bounded, and with every character a terminal could act on
// shown escaped, so they can be printed as they are. Branch on the
// sentinels with errors.Is: [ErrReauthRequired] (log in again),
// [ErrClientRejected] (fix the registration or the secret; its
// [ErrInvalidScope] and [ErrInvalidTarget] name a refused scope or
// resource, and a rejected client's message names the authentication
// used, to be set in Options.AuthMethod),
// [ErrTemporarilyUnavailable], [ErrNetwork], [ErrTokenEndpointTimeout]
// and [ErrRateLimited] (retry later), [ErrStoreUnavailable] (there is no
// usable keychain: choose a store) and [ErrStoreLocked] (the keychain is
// locked, or has no keyring yet: a person must unlock or create it; it
// does not match ErrStoreUnavailable, so check both), [ErrDiscovery],
// [ErrIssuerMismatch], [ErrAccessDenied], [ErrInteractionRequired] (the
// server answered prompt=none with a need for the user: log in again
// without it), matched too by [ErrLoginRequired] and [ErrConsentRequired],
// [ErrLoginExpired],
// [ErrCallbackRejected], [ErrBadResponse], [ErrUnsupportedTokenType],
// [ErrDPoPAlgorithm] (with ErrInvalidConfig), [ErrInvalidDPoPProof],
// [ErrInvalidConfig], [ErrInsecureURL], [ErrOriginNotAllowed] (a request
// to another origin under Options.RejectOtherOrigins),
// [ErrTokenRejected], [ErrClosed]. The details are in types, for
// errors.As: [*EndpointError] (which endpoint, which HTTP status),
// [*RateLimitError] (the server's Retry-After), [*AuthorizationError] (the
// server's refusal of a login, its code and description) and
// [*LogoutError].
//
//	_, err := c.Token(ctx)
//	var rl *client.RateLimitError
//	switch {
//	case errors.Is(err, client.ErrReauthRequired):
//		err = c.Login(ctx)
//	case errors.As(err, &rl):
//		time.Sleep(rl.RetryAfter) // the server's hint
//	}
//
// # Events
//
// Options.Events receives an [Event] for each noteworthy change: a token
// refreshed (with how many requests waited for it, usually none) or not,
// re-authentication required, a save that failed and the one that later
// succeeded, a refresh token about to expire, an API that rejects fresh
// tokens ([ErrTokenRejected]), clock skew, login and logout. Events never
// carry a secret. The hook runs synchronously, sometimes while a token
// operation holds the credential's lock: keep it fast, and hand anything
// that calls the Client to another goroutine. Options.Logger receives
// diagnostic logs under the same rule.
//
// # Promises
//
// A rotated refresh token is saved, and read back, before the new tokens
// are used, so a crash never strands the login on a spent refresh token.
// Tokens are refreshed in the background from about 80 % of their
// lifetime, so requests do not wait for the token endpoint; one refresh
// serves every goroutine, every Client of the same credential in the
// process, and (through the store's lock) every process. A request that
// carries a single-use credential (a refresh token, an authorization or
// device code) is never sent twice once it may have reached the server.
// Access tokens go only to the allowed origins, over https (plain http
// only on loopback, by opt-in), never along a redirect to another origin.
// Secrets reach no log, error, event or printed value of tokenward's
// types; the *oauth2.Token that Token returns is golang.org/x/oauth2's
// type, and printing it shows the access token.
package client
