package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/refresh"
)

// discoveryTTL is how long a discovery document is reused in this process.
const discoveryTTL = time.Hour

// discoveryCache holds the discovery documents of the issuers that open
// Clients use, so that Clients for one issuer share one fetch. An entry
// lives while a Client holds it, and at most discoveryTTL: once the last
// Client that used it closes, the next New fetches again (a server
// restarted on the same address with another configuration is seen).
var discoveryCache = struct {
	sync.Mutex
	m map[string]discoveryEntry
}{m: map[string]discoveryEntry{}}

type discoveryEntry struct {
	doc   *oauthwire.Discovery
	at    time.Time
	users int // open Clients that took the document from this entry
}

// holdDiscovery records that g uses the document cached under key.
func (g *grant) holdDiscovery(key string, doc *oauthwire.Discovery, fetched bool) {
	discoveryCache.Lock()
	defer discoveryCache.Unlock()
	e, ok := discoveryCache.m[key]
	if !ok || fetched {
		e.doc, e.at = doc, g.now()
	}
	e.users++
	discoveryCache.m[key] = e
	g.discoKey = key
}

// releaseDiscovery drops g's hold on its cached discovery document; the
// last Client to let go removes the entry.
func (g *grant) releaseDiscovery() {
	if g.discoKey == "" {
		return
	}
	discoveryCache.Lock()
	defer discoveryCache.Unlock()
	if e, ok := discoveryCache.m[g.discoKey]; ok {
		if e.users--; e.users <= 0 {
			delete(discoveryCache.m, g.discoKey)
		} else {
			discoveryCache.m[g.discoKey] = e
		}
	}
	g.discoKey = ""
}

// discover fills g.endpoints from Options.Endpoints and, with an issuer, the
// discovery document (RFC 8414 first, then OpenID Connect), whose issuer
// must equal the configured one exactly.
func (g *grant) discover(ctx context.Context) error {
	g.endpoints = g.cfg.Endpoints
	g.issuer, g.keyIssuer = g.cfg.Issuer, g.cfg.Issuer
	if g.cfg.Issuer == "" {
		// Without an issuer the token URL identifies the server in store
		// keys; authorization responses' iss cannot be checked.
		g.keyIssuer = g.cfg.Endpoints.TokenURL
		return nil
	}
	doc, err := g.fetchDiscovery(ctx)
	if err != nil {
		// A mismatched issuer is a mix-up signal (RFC 8414 section 3.3):
		// never ignored, even with explicit endpoints.
		if g.cfg.Endpoints.TokenURL != "" && !errors.Is(err, ErrIssuerMismatch) {
			// Explicit endpoints make discovery optional.
			g.log.Debug("client: discovery failed; using the configured endpoints", "issuer", redact.URLString(g.issuer), "error", err)
			return nil
		}
		return err
	}
	if err := doc.CheckSecure(g.cfg.AllowInsecureLoopback); err != nil {
		return fmt.Errorf("client: discovery document: %w", err)
	}
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&g.endpoints.AuthURL, doc.AuthorizationEndpoint)
	fill(&g.endpoints.TokenURL, doc.TokenEndpoint)
	fill(&g.endpoints.DeviceAuthURL, doc.DeviceAuthorizationEndpoint)
	fill(&g.endpoints.RevocationURL, doc.RevocationEndpoint)
	g.issRequired = doc.AuthorizationResponseIssParameterSupported
	g.disco = doc
	if g.endpoints.TokenURL == "" {
		return fmt.Errorf("%w: the discovery document has no token_endpoint", ErrBadResponse)
	}
	return nil
}

func (g *grant) fetchDiscovery(ctx context.Context) (*oauthwire.Discovery, error) {
	cacheKey := g.cfg.Issuer
	discoveryCache.Lock()
	e, ok := discoveryCache.m[cacheKey]
	discoveryCache.Unlock()
	if ok && g.now().Sub(e.at) < discoveryTTL {
		g.holdDiscovery(cacheKey, e.doc, false)
		return e.doc, nil
	}
	// One bound for the whole discovery, both well-known URLs included.
	ctx, cancel := context.WithTimeout(ctx, g.ep.timeout)
	defer cancel()
	oauthURL, openidURL, err := oauthwire.WellKnownURLs(g.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("client: %w: Issuer: %w", ErrInvalidConfig, err)
	}
	var errs []error
	for _, u := range []string{oauthURL, openidURL} {
		doc, err := g.getDiscovery(ctx, u)
		if err == nil {
			g.holdDiscovery(cacheKey, doc, true)
			return doc, nil
		}
		if errors.Is(err, ErrIssuerMismatch) || ctx.Err() != nil {
			return nil, fmt.Errorf("%w for %s: %w", ErrDiscovery, redact.URLString(g.cfg.Issuer), err)
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w for %s: %w", ErrDiscovery, redact.URLString(g.cfg.Issuer), errors.Join(errs...))
}

// errNoDiscoveryDocument: a well-known URL answered, but not with a
// discovery document.
var errNoDiscoveryDocument = errors.New("no discovery document at this URL")

// serverBusy is a 5xx or 429 answer from an endpoint that is not the
// token endpoint; it matches ErrTemporarilyUnavailable.
type serverBusy struct{}

func (serverBusy) Error() string { return "the server is temporarily unavailable" }

func (serverBusy) Is(target error) bool { return target == ErrTemporarilyUnavailable }

func (g *grant) getDiscovery(ctx context.Context, u string) (*oauthwire.Discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w: discovery URL", ErrInvalidConfig)
	}
	req.Header.Set("Accept", "application/json")
	hc := g.ep.rc.HTTPClient // no redirects, no total timeout (ctx has it)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &EndpointError{Endpoint: redact.URLString(u), Err: netCause(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	if err != nil {
		return nil, &EndpointError{Endpoint: redact.URLString(u), Err: netCause(err)}
	}
	if resp.StatusCode != http.StatusOK {
		// Not a token endpoint: an OAuth error body means nothing here.
		var cause error = errNoDiscoveryDocument
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			cause = serverBusy{}
		}
		return nil, &EndpointError{Endpoint: redact.URLString(u), Status: resp.StatusCode, Err: cause}
	}
	if len(body) > oauthwire.MaxBody {
		return nil, &EndpointError{Endpoint: redact.URLString(u), Err: fmt.Errorf("%w: discovery document larger than 1 MiB", ErrBadResponse)}
	}
	doc, err := oauthwire.ParseDiscovery(body, g.cfg.Issuer)
	if err != nil {
		if errors.Is(err, oauthwire.ErrIssuerMismatch) {
			return nil, &EndpointError{Endpoint: redact.URLString(u), Err: fmt.Errorf("%w: %w", ErrIssuerMismatch, err)}
		}
		return nil, &EndpointError{Endpoint: redact.URLString(u), Err: fmt.Errorf("%w: %w", ErrBadResponse, err)}
	}
	return doc, nil
}

// chooseAuthMethod settles the client authentication method: the configured
// one, else one the server supports for the credentials given. It is never
// found by trial and error (O-08).
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
		return fmt.Errorf("client: %w: the server does not support client authentication %q (it supports %s)", ErrInvalidConfig, m, strings.Join(g.disco.TokenEndpointAuthMethodsSupported, ", "))
	}
	if m == AuthNone && g.cfg.Grant == GrantClientCredentials {
		return fmt.Errorf("client: %w: client credentials need client authentication", ErrInvalidConfig)
	}
	g.method = m
	return nil
}

// authFor returns the client authentication for a request to endpoint.
func (g *grant) authFor(endpoint string) clientAuth {
	return clientAuth{method: g.method, id: g.cfg.ClientID, secret: g.cfg.ClientSecret,
		key: g.cfg.PrivateKey, keyID: g.cfg.KeyID, audience: g.endpoints.TokenURL, now: g.now}
}

// tokenRequest posts one token request and parses the answer.
func (g *grant) tokenRequest(ctx context.Context, form url.Values, policy replay) (*oauth2.Token, error) {
	resp, err := g.ep.post(ctx, g.endpoints.TokenURL, form, g.authFor(g.endpoints.TokenURL), policy)
	if err != nil {
		return nil, err
	}
	return g.parseToken(resp)
}

// parseToken turns a token-endpoint answer into a token: the OAuth error
// classified, and the expiry set to the earlier of expires_in and the
// token's own exp claim, in this machine's clock (tokenExpiry).
func (g *grant) parseToken(resp *response) (*oauth2.Token, error) {
	tok, err := oauthwire.ParseTokenResponse(resp.status, resp.header, resp.body, resp.sent)
	if err != nil {
		return nil, g.classify(g.endpoints.TokenURL, resp.status, err)
	}
	// The token type is checked by the token cache (refresh), which keeps a
	// rotated refresh token even from an answer whose access token it must
	// refuse, so the spent one is never presented again.
	skew, ok := oauthwire.ClockSkew(resp.header, resp.sent, g.now())
	if ok && (skew > skewThreshold || skew < -skewThreshold) {
		g.emit(Event{Kind: EventClockSkew, Time: g.now(), Skew: skew.Round(time.Second)})
	}
	tok.Expiry = tokenExpiry(tok, resp.sent, skew, ok)
	return tok, nil
}

// classify wraps an error answer of endpoint in the refresh taxonomy.
func (g *grant) classify(endpoint string, status int, err error) error {
	if errors.Is(err, oauthwire.ErrBodyTooLarge) || errors.Is(err, oauthwire.ErrMalformedResponse) ||
		errors.Is(err, oauthwire.ErrUnexpectedContentType) || errors.Is(err, oauthwire.ErrMissingAccessToken) ||
		errors.Is(err, oauthwire.ErrInvalidDeviceResponse) {
		return &EndpointError{Endpoint: redact.URLString(endpoint), Status: status, Err: fmt.Errorf("%w: %w", ErrBadResponse, err)}
	}
	return &EndpointError{Endpoint: redact.URLString(endpoint), Status: status, Err: refresh.Classify(err)}
}

// clientCredentials is the upstream of GrantClientCredentials. Its requests
// carry no single-use credential, so they may be retried.
func (g *grant) clientCredentials(ctx context.Context, resources []string) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(g.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(g.cfg.Scopes, " "))
	}
	for _, r := range resources {
		form.Add("resource", r)
	}
	return g.tokenRequest(ctx, form, replaySafe)
}

// refreshGrant is the upstream of a login's default token: one refresh_token
// request, never replayed once it may have reached the server.
func (g *grant) refreshGrant(ctx context.Context, cur *oauth2.Token, resources []string) (*oauth2.Token, error) {
	if cur == nil || cur.RefreshToken == "" {
		return nil, fmt.Errorf("%w: not logged in (no refresh token); call Login", ErrReauthRequired)
	}
	tok, err := g.tokenRequest(ctx, g.refreshForm(cur.RefreshToken, resources), replayNever)
	if err != nil {
		return nil, err
	}
	keepRefreshToken(tok, cur)
	return tok, nil
}

func (g *grant) refreshForm(rt string, resources []string) url.Values {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for _, r := range resources {
		form.Add("resource", r)
	}
	return form
}

// keepRefreshToken carries the old refresh token (and its expiry) over when
// the server did not rotate it (RFC 6749 section 6: a new one is optional).
func keepRefreshToken(tok, old *oauth2.Token) {
	if tok.RefreshToken != "" || old == nil {
		return
	}
	tok.RefreshToken = old.RefreshToken
	if rtExp := tokenx.RefreshTokenExpiry(old); !rtExp.IsZero() && tokenx.RefreshTokenExpiry(tok).IsZero() {
		*tok = *tok.WithExtra(withExtra(tok, tokenx.KeyRefreshTokenExpiry, rtExp))
	}
}

// withExtra returns tok's extras plus key=v, for oauth2.Token.WithExtra.
func withExtra(tok *oauth2.Token, key string, v any) map[string]any {
	m := tokenx.Extras(tok)
	m[key] = v
	return m
}

// mintForResource is the upstream of a resource other than the default: it
// presents the login's refresh token (held by the default token's cache) for
// an access token to the resource. It runs inside the default cache's
// Exchange, so no refresh of the login and no other mint, in this process or
// another, presents the same refresh token meanwhile, the freshest refresh
// token is used (even one whose save failed), and a rotated refresh token is
// saved before the minted access token is used.
func (g *grant) mintForResource(ctx context.Context, resources []string) (*oauth2.Token, error) {
	login, err := g.loginCache()
	if err != nil {
		return nil, err
	}
	defer login.Close()
	var minted *oauth2.Token
	err = login.Exchange(ctx, func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error) {
		tok, err := g.tokenRequest(ctx, g.refreshForm(full.RefreshToken, resources), replayNever)
		if err != nil {
			return nil, err
		}
		minted = tok
		if tok.RefreshToken == "" || tok.RefreshToken == full.RefreshToken {
			return nil, nil // not rotated: the login is unchanged
		}
		// Rotated: the login keeps its access token and takes the new
		// refresh token (and its expiry).
		rotated := &oauth2.Token{RefreshToken: tok.RefreshToken}
		if exp := tokenx.RefreshTokenExpiry(tok); !exp.IsZero() {
			rotated = rotated.WithExtra(map[string]any{tokenx.KeyRefreshTokenExpiry: exp})
		}
		return rotated, nil
	})
	if minted == nil {
		return nil, err
	}
	if err != nil && !errors.Is(err, refresh.ErrPersistFailed) {
		return nil, err
	}
	// With ErrPersistFailed the rotated refresh token is kept in memory by
	// the login's cache and saved on its next access (C-04); the minted
	// access token is good. The resource's own entry never holds the
	// login's refresh token.
	out := *minted
	out.RefreshToken = ""
	return &out, nil
}
