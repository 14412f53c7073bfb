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

var discoveryCache = struct {
	sync.Mutex
	m map[string]discoveryEntry
}{m: map[string]discoveryEntry{}}

type discoveryEntry struct {
	doc *oauthwire.Discovery
	at  time.Time
}

// discover fills c.endpoints from Config.Endpoints and, with an issuer, the
// discovery document (RFC 8414 first, then OpenID Connect), whose issuer
// must equal the configured one exactly.
func (c *Client) discover(ctx context.Context) error {
	c.endpoints = c.cfg.Endpoints
	c.issuer = c.cfg.Issuer
	if c.cfg.Issuer == "" {
		c.issuer = c.cfg.Endpoints.TokenURL
		return nil
	}
	doc, err := c.fetchDiscovery(ctx)
	if err != nil {
		if c.cfg.Endpoints.TokenURL != "" {
			// Explicit endpoints make discovery optional.
			c.log.Debug("client: discovery failed; using the configured endpoints", "issuer", redact.URLString(c.issuer), "error", err)
			return nil
		}
		return err
	}
	if err := doc.CheckSecure(c.cfg.AllowInsecureLoopback); err != nil {
		return fmt.Errorf("client: discovery document: %w", err)
	}
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&c.endpoints.AuthURL, doc.AuthorizationEndpoint)
	fill(&c.endpoints.TokenURL, doc.TokenEndpoint)
	fill(&c.endpoints.DeviceAuthURL, doc.DeviceAuthorizationEndpoint)
	fill(&c.endpoints.RevocationURL, doc.RevocationEndpoint)
	c.issRequired = doc.AuthorizationResponseIssParameterSupported
	c.disco = doc
	if c.endpoints.TokenURL == "" {
		return fmt.Errorf("%w: the discovery document has no token_endpoint", ErrBadResponse)
	}
	return nil
}

func (c *Client) fetchDiscovery(ctx context.Context) (*oauthwire.Discovery, error) {
	cacheKey := c.cfg.Issuer
	discoveryCache.Lock()
	e, ok := discoveryCache.m[cacheKey]
	discoveryCache.Unlock()
	if ok && c.now().Sub(e.at) < discoveryTTL {
		return e.doc, nil
	}
	oauthURL, openidURL, err := oauthwire.WellKnownURLs(c.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: Issuer: %w", ErrInvalidConfig, err)
	}
	var errs []error
	for _, u := range []string{oauthURL, openidURL} {
		doc, err := c.getDiscovery(ctx, u)
		if err == nil {
			discoveryCache.Lock()
			discoveryCache.m[cacheKey] = discoveryEntry{doc: doc, at: c.now()}
			discoveryCache.Unlock()
			return doc, nil
		}
		if errors.Is(err, ErrIssuerMismatch) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("client: discovery for %s failed: %w", redact.URLString(c.cfg.Issuer), errors.Join(errs...))
}

func (c *Client) getDiscovery(ctx context.Context, u string) (*oauthwire.Discovery, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ep.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery URL", ErrInvalidConfig)
	}
	req.Header.Set("Accept", "application/json")
	hc := c.ep.rc.HTTPClient // no redirects, no total timeout (ctx has it)
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
		return nil, &EndpointError{Endpoint: redact.URLString(u), Status: resp.StatusCode, Err: refresh.Classify(oauthwire.ParseErrorResponse(resp.StatusCode, resp.Header, body))}
	}
	if len(body) > oauthwire.MaxBody {
		return nil, &EndpointError{Endpoint: redact.URLString(u), Err: fmt.Errorf("%w: discovery document larger than 1 MiB", ErrBadResponse)}
	}
	doc, err := oauthwire.ParseDiscovery(body, c.cfg.Issuer)
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
func (c *Client) chooseAuthMethod() error {
	m := c.cfg.AuthMethod
	supported := func(m AuthMethod) bool {
		return c.disco == nil || c.disco.SupportsAuthMethod(string(m))
	}
	if m == "" {
		switch {
		case c.cfg.PrivateKey != nil:
			m = AuthPrivateKeyJWT
		case c.cfg.ClientSecret != "" && supported(AuthSecretBasic):
			m = AuthSecretBasic
		case c.cfg.ClientSecret != "" && supported(AuthSecretPost):
			m = AuthSecretPost
		case c.cfg.ClientSecret != "":
			m = AuthSecretBasic
		default:
			m = AuthNone
		}
	}
	if c.disco != nil && len(c.disco.TokenEndpointAuthMethodsSupported) > 0 && !supported(m) {
		return fmt.Errorf("%w: the server does not support client authentication %q (it supports %s)", ErrInvalidConfig, m, strings.Join(c.disco.TokenEndpointAuthMethodsSupported, ", "))
	}
	if m == AuthNone && c.cfg.Grant == GrantClientCredentials {
		return fmt.Errorf("%w: client credentials need client authentication", ErrInvalidConfig)
	}
	c.method = m
	return nil
}

// authFor returns the client authentication for a request to endpoint.
func (c *Client) authFor(endpoint string) clientAuth {
	return clientAuth{method: c.method, id: c.cfg.ClientID, secret: c.cfg.ClientSecret,
		key: c.cfg.PrivateKey, keyID: c.cfg.KeyID, audience: c.endpoints.TokenURL, now: c.now}
}

// tokenRequest posts one token request and parses the answer.
func (c *Client) tokenRequest(ctx context.Context, form url.Values, policy replay) (*oauth2.Token, error) {
	resp, err := c.ep.post(ctx, c.endpoints.TokenURL, form, c.authFor(c.endpoints.TokenURL), policy)
	if err != nil {
		return nil, err
	}
	return c.parseToken(resp)
}

// parseToken turns a token-endpoint answer into a token: the OAuth error
// classified, the token type checked, and the expiry corrected for the
// server's clock when it came from the token's own exp claim.
func (c *Client) parseToken(resp *response) (*oauth2.Token, error) {
	tok, err := oauthwire.ParseTokenResponse(resp.status, resp.header, resp.body, resp.sent)
	if err != nil {
		return nil, c.classify(c.endpoints.TokenURL, resp.status, err)
	}
	// The token type is checked by the token cache (refresh), which keeps a
	// rotated refresh token even from an answer whose access token it must
	// refuse, so the spent one is never presented again.
	skew, ok := oauthwire.ClockSkew(resp.header, resp.sent, c.now())
	if ok && (skew > skewThreshold || skew < -skewThreshold) {
		c.emit(Event{Kind: EventClockSkew, Time: c.now(), Skew: skew.Round(time.Second)})
		if tok.Expiry.IsZero() {
			// No expires_in: the exp claim is in the server's clock.
			if exp, ok := tokenx.JWTExpiry(tok.AccessToken); ok {
				tok.Expiry = exp.Add(-skew)
			}
		}
	}
	return tok, nil
}

// skewThreshold is the clock difference from which tokenward corrects
// server-clock times and reports EventClockSkew.
const skewThreshold = 30 * time.Second

// classify wraps an error answer of endpoint in the refresh taxonomy.
func (c *Client) classify(endpoint string, status int, err error) error {
	if errors.Is(err, oauthwire.ErrBodyTooLarge) || errors.Is(err, oauthwire.ErrMalformedResponse) ||
		errors.Is(err, oauthwire.ErrUnexpectedContentType) || errors.Is(err, oauthwire.ErrMissingAccessToken) ||
		errors.Is(err, oauthwire.ErrInvalidDeviceResponse) {
		return &EndpointError{Endpoint: redact.URLString(endpoint), Status: status, Err: fmt.Errorf("%w: %w", ErrBadResponse, err)}
	}
	return &EndpointError{Endpoint: redact.URLString(endpoint), Status: status, Err: refresh.Classify(err)}
}

// clientCredentials is the upstream of GrantClientCredentials. Its requests
// carry no single-use credential, so they may be retried.
func (c *Client) clientCredentials(ctx context.Context, resources []string) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	for _, r := range resources {
		form.Add("resource", r)
	}
	return c.tokenRequest(ctx, form, replaySafe)
}

// refreshGrant is the upstream of a login's default token: one refresh_token
// request, never replayed once it may have reached the server.
func (c *Client) refreshGrant(ctx context.Context, cur *oauth2.Token, resources []string) (*oauth2.Token, error) {
	if cur == nil || cur.RefreshToken == "" {
		return nil, fmt.Errorf("%w: not logged in (no refresh token); call Login", ErrReauthRequired)
	}
	tok, err := c.tokenRequest(ctx, c.refreshForm(cur.RefreshToken, resources), replayNever)
	if err != nil {
		return nil, err
	}
	keepRefreshToken(tok, cur)
	return tok, nil
}

func (c *Client) refreshForm(rt string, resources []string) url.Values {
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
func (c *Client) mintForResource(ctx context.Context, resources []string) (*oauth2.Token, error) {
	var minted *oauth2.Token
	err := c.defaultResource().cache.Exchange(ctx, func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error) {
		tok, err := c.tokenRequest(ctx, c.refreshForm(full.RefreshToken, resources), replayNever)
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
