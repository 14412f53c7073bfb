package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

// EnvAccessToken names the environment variable whose value, when set, is
// used as the access token for every request, bypassing the store and every
// grant (Config.AccessToken has the same effect; PITFALLS S-04).
const EnvAccessToken = "TOKENWARD_ACCESS_TOKEN"

// Client is one configured OAuth client: it logs in, keeps tokens fresh in
// the store, and hands out HTTP clients that attach them. It is safe for
// concurrent use. Create it with [New]; release it with [Client.Close].
type Client struct {
	cfg         Config
	issuer      string // the issuer identifier (or the token URL without one)
	endpoints   Endpoints
	issRequired bool // the server promised "iss" in authorization responses (RFC 9207)
	method      AuthMethod

	ep      *endpointClient
	base    http.RoundTripper // base transport for API calls
	store   store.Store       // nil with a static token
	prompt  io.Writer
	log     *slog.Logger
	now     func() time.Time
	origins []string // API origins of the default token

	static *oauth2.Token // Config.AccessToken / TOKENWARD_ACCESS_TOKEN

	mu        sync.Mutex // guards resources and closed
	resources map[string]*Resource
	closed    bool

	disco *oauthwire.Discovery // nil without discovery
}

// Resource is the access token for one API (an RFC 8707 resource indicator)
// and the HTTP client that sends it only to that API's origins. The default
// resource comes with the Client; more come from [Client.ForResource]. All
// of a login's resources share its one refresh token.
type Resource struct {
	c         *Client
	resources []string // the resource indicators sent on token requests
	origins   []string
	key       store.Key
	cache     *refresh.Cache // nil for a static token
	tr        *transport.Transport
}

// New validates cfg, runs discovery when cfg.Issuer is set (cached per
// process), opens the store and prepares the default token cache. It makes
// no token request: the first one happens on the first API call (client
// credentials) or at Login.
func New(ctx context.Context, cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, now: time.Now, resources: map[string]*Resource{}}
	if err := c.init(ctx); err != nil {
		c.closeResources()
		return nil, err
	}
	return c, nil
}

func (c *Client) init(ctx context.Context) error {
	cfg := &c.cfg
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.Resources = slices.Clone(cfg.Resources)
	cfg.APIOrigins = slices.Clone(cfg.APIOrigins)
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.prompt = cfg.Prompt
	if c.prompt == nil {
		c.prompt = os.Stderr
	}
	if cfg.Grant == "" {
		cfg.Grant = GrantLogin
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = 5 * time.Minute
	}
	if cfg.AccessToken == "" {
		cfg.AccessToken = os.Getenv(EnvAccessToken)
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := c.initHTTP(); err != nil {
		return err
	}
	origins, err := c.apiOrigins(cfg.APIOrigins, cfg.Resources)
	if err != nil {
		return err
	}
	c.origins = origins

	if cfg.AccessToken != "" {
		// S-04: an explicit token bypasses discovery, the store and every
		// grant; the keychain is never touched.
		c.static = &oauth2.Token{AccessToken: cfg.AccessToken, TokenType: "Bearer"}
		c.issuer = cfg.Issuer
		_, err := c.resource(c.defaultResources(), c.origins, true)
		return err
	}

	if err := c.discover(ctx); err != nil {
		return err
	}
	if err := c.chooseAuthMethod(); err != nil {
		return err
	}

	st := cfg.Store
	if st == nil {
		st, err = store.Open(ctx, cfg.StoreOptions...)
		if err != nil {
			return fmt.Errorf("client: opening the token store: %w", err)
		}
	}
	c.store = st
	if s := st.Status(); s.Warning != "" {
		c.log.Warn("client: insecure token storage", "mode", string(s.Mode), "warning", s.Warning)
	}
	_, err = c.resource(c.defaultResources(), c.origins, true)
	return err
}

// validate checks the configuration before anything touches the network.
func (c *Client) validate() error {
	cfg := &c.cfg
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if cfg.AccessToken != "" {
		if strings.ContainsAny(cfg.AccessToken, " \t\r\n") {
			return bad("AccessToken contains white space")
		}
		return nil
	}
	if cfg.ClientID == "" {
		return bad("ClientID is required")
	}
	if cfg.Issuer == "" && cfg.Endpoints.TokenURL == "" {
		return bad("Issuer (for discovery) or Endpoints.TokenURL is required")
	}
	switch cfg.Grant {
	case GrantLogin, GrantClientCredentials:
	default:
		return bad("unknown Grant %q", cfg.Grant)
	}
	switch cfg.AuthMethod {
	case "", AuthNone, AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT:
	default:
		return bad("unknown AuthMethod %q", cfg.AuthMethod)
	}
	if (cfg.AuthMethod == AuthSecretBasic || cfg.AuthMethod == AuthSecretPost) && cfg.ClientSecret == "" {
		return bad("AuthMethod %s needs a ClientSecret", cfg.AuthMethod)
	}
	if cfg.AuthMethod == AuthPrivateKeyJWT && cfg.PrivateKey == nil {
		return bad("AuthMethod private_key_jwt needs a PrivateKey")
	}
	if cfg.PrivateKey != nil {
		if _, err := oauthwire.AssertionAlg(cfg.PrivateKey.Public()); err != nil {
			return bad("PrivateKey: %v", err)
		}
	}
	if cfg.Grant == GrantClientCredentials && cfg.ClientSecret == "" && cfg.PrivateKey == nil {
		return bad("GrantClientCredentials needs a ClientSecret or a PrivateKey")
	}
	if cfg.RedirectHost != "" {
		h := strings.TrimSuffix(strings.TrimPrefix(cfg.RedirectHost, "["), "]")
		if h != "127.0.0.1" && h != "::1" {
			return bad("RedirectHost must be 127.0.0.1 or ::1, not %q (RFC 8252: never bind a non-loopback address)", cfg.RedirectHost)
		}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return bad("scope %q is not a valid scope token", s)
		}
	}
	for _, r := range cfg.Resources {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return bad("resource %q is not an absolute URI without fragment (RFC 8707)", redact.URLString(r))
		}
	}
	for _, u := range []string{cfg.Issuer, cfg.Endpoints.AuthURL, cfg.Endpoints.TokenURL, cfg.Endpoints.DeviceAuthURL, cfg.Endpoints.RevocationURL} {
		if u == "" {
			continue
		}
		if err := oauthwire.CheckSecureURL(u, cfg.AllowInsecureLoopback); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	return nil
}

// initHTTP builds the base transport and the endpoint client.
func (c *Client) initHTTP() error {
	h := c.cfg.HTTP
	base := h.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if h.TLSConfig != nil {
			t.TLSClientConfig = h.TLSConfig.Clone()
		}
		if h.Proxy != nil {
			t.Proxy = h.Proxy
		}
		base = t
	}
	c.base = base
	timeout := defDur(h.Timeout, 30*time.Second)
	budget := defDur(h.RetryBudget, 20*time.Second)
	wmin := defDur(h.RetryWaitMin, 200*time.Millisecond)
	wmax := defDur(h.RetryWaitMax, 5*time.Second)
	if wmax < wmin {
		return fmt.Errorf("%w: HTTP.RetryWaitMax is shorter than HTTP.RetryWaitMin", ErrInvalidConfig)
	}
	retries := h.RetryMax
	switch {
	case retries == 0:
		retries = 3
	case retries < 0:
		retries = 0
	}
	c.ep = newEndpointClient(&http.Client{Transport: base}, c.log, timeout, budget, wmin, wmax, retries)
	return nil
}

func defDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// apiOrigins normalises the configured origins, or derives them from the
// resource indicators, and checks that each is secure.
func (c *Client) apiOrigins(origins, resources []string) ([]string, error) {
	if len(origins) == 0 {
		for _, r := range resources {
			u, err := url.Parse(r)
			if err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
				origins = append(origins, u.Scheme+"://"+u.Host)
			}
		}
	}
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%w: API origin %q must be scheme://host[:port]", ErrInvalidConfig, redact.URLString(o))
		}
		if err := oauthwire.CheckSecureURL(o, c.cfg.AllowInsecureLoopback); err != nil {
			return nil, fmt.Errorf("client: API origin: %w", err)
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return out, nil
}

// defaultResources are the resource indicators on the default token's
// requests: the configured one when there is exactly one. With several, the
// login covers them all and each gets its own token via ForResource, since
// servers issue one audience per access token.
func (c *Client) defaultResources() []string {
	if len(c.cfg.Resources) == 1 {
		return c.cfg.Resources
	}
	return nil
}

// allResources are the resource indicators of authorization requests: every
// resource the login should cover.
func (c *Client) allResources() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.cfg.Resources)
	for _, r := range c.resources {
		for _, x := range r.resources {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	return out
}

// baseKey is the store key of the login's token set (the one holding the
// refresh token).
func (c *Client) baseKey() store.Key {
	return store.Key{Issuer: c.issuer, ClientID: c.cfg.ClientID, Scopes: c.cfg.Scopes, Resource: c.defaultResources(), Profile: c.cfg.Profile}
}

// resource returns (creating on first use) the token handle for resources.
func (c *Client) resource(resources, origins []string, isDefault bool) (*Resource, error) {
	id := strings.Join(resources, "\x00")
	if isDefault {
		id = "\x00default"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("client: closed")
	}
	if r, ok := c.resources[id]; ok {
		if len(origins) > 0 && !slices.Equal(origins, r.origins) {
			return nil, fmt.Errorf("%w: resource already registered with other origins", ErrInvalidConfig)
		}
		return r, nil
	}
	r := &Resource{c: c, resources: slices.Clone(resources), origins: origins}
	var src transport.TokenSource
	if c.static != nil {
		tok := c.static
		src = transport.TokenSourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil })
	} else {
		r.key = c.baseKey()
		if !isDefault {
			r.key.Resource = resources
		}
		var up refresh.Upstream
		switch {
		case c.cfg.Grant == GrantClientCredentials:
			up = refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
				return c.clientCredentials(ctx, resources)
			})
		case isDefault:
			up = refresh.UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
				return c.refreshGrant(ctx, cur, resources)
			})
		default:
			up = refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
				return c.mintForResource(ctx, resources)
			})
		}
		cache, err := refresh.New(r.key.String(), up, func(o *refresh.Options) {
			o.Persister = persister{c.store}
			o.Logger = c.log
			o.OnEvent = c.refreshEvent(resources)
			for _, f := range c.cfg.RefreshOptions {
				f(o)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		r.cache = cache
		src = cache
	}
	if len(origins) > 0 {
		tr, err := transport.New(src, func(t *transport.Transport) {
			t.Base = c.base
			t.Origins = origins
			t.AllowInsecureLoopback = c.cfg.AllowInsecureLoopback
			t.Logger = c.log
		})
		if err != nil {
			if r.cache != nil {
				r.cache.Close()
			}
			return nil, fmt.Errorf("client: %w", err)
		}
		r.tr = tr
	}
	c.resources[id] = r
	return r, nil
}

// ForResource returns the token handle for another API of the same login:
// resource is its RFC 8707 resource indicator and origins the origins its
// token may be sent to (default: the resource's own origin). Each resource
// has its own access token, cached and refreshed on its own, and the login's
// one refresh token mints them all (rotations are saved before use). For a
// login, list every resource in Config.Resources so the authorization covers
// it.
func (c *Client) ForResource(resource string, origins ...string) (*Resource, error) {
	u, err := url.Parse(resource)
	if err != nil || !u.IsAbs() || u.Fragment != "" {
		return nil, fmt.Errorf("%w: resource %q is not an absolute URI without fragment (RFC 8707)", ErrInvalidConfig, redact.URLString(resource))
	}
	o, err := c.apiOrigins(origins, []string{resource})
	if err != nil {
		return nil, err
	}
	if len(o) == 0 {
		return nil, fmt.Errorf("%w: no origin for resource %q", ErrInvalidConfig, redact.URLString(resource))
	}
	return c.resource([]string{resource}, o, false)
}

func (c *Client) defaultResource() *Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resources["\x00default"]
}

// HTTPClient returns an *http.Client whose requests to Config.APIOrigins
// carry the default access token, refreshed in the background; requests to
// other origins (including redirects to them) carry none. ctx is not
// retained; it exists for symmetry with the other calls. It fails with
// ErrInvalidConfig when no API origin is configured.
func (c *Client) HTTPClient(ctx context.Context) (*http.Client, error) {
	return c.defaultResource().HTTPClient(ctx)
}

// Token returns the default access token, refreshing it if needed. The token
// never carries the refresh token and must not be modified. Most code should
// use HTTPClient instead, which scopes the token to its origins.
func (c *Client) Token(ctx context.Context) (*oauth2.Token, error) {
	return c.defaultResource().Token(ctx)
}

// TokenSource returns the default token as an oauth2.TokenSource for code
// built on golang.org/x/oauth2. Each call of its Token method is bounded by
// the cache's own refresh timeout.
func (c *Client) TokenSource() oauth2.TokenSource {
	return c.defaultResource().TokenSource()
}

// HTTPClient returns an *http.Client that sends this resource's token to its
// origins only. See [Client.HTTPClient].
func (r *Resource) HTTPClient(ctx context.Context) (*http.Client, error) {
	if r.tr == nil {
		return nil, fmt.Errorf("%w: no API origin configured for this token (set Config.APIOrigins or a resource URL)", ErrInvalidConfig)
	}
	return &http.Client{Transport: r.tr}, nil
}

// Token returns this resource's access token, refreshing it if needed.
func (r *Resource) Token(ctx context.Context) (*oauth2.Token, error) {
	if r.cache == nil {
		return r.c.static, nil
	}
	return r.cache.Token(ctx)
}

// TokenSource returns this resource's token as an oauth2.TokenSource.
func (r *Resource) TokenSource() oauth2.TokenSource {
	if r.cache == nil {
		return oauth2.StaticTokenSource(r.c.static)
	}
	return refresh.TokenSource(r.cache)
}

// Close releases the token caches. It does not log out.
func (c *Client) Close() error {
	c.closeResources()
	return nil
}

func (c *Client) closeResources() {
	c.mu.Lock()
	rs := c.resources
	c.resources = map[string]*Resource{}
	c.closed = true
	c.mu.Unlock()
	for _, r := range rs {
		if r.cache != nil {
			r.cache.Close()
		}
		if r.tr != nil {
			r.tr.CloseIdleConnections()
		}
	}
}

// persister adapts a store.Store to refresh.Persister and refresh.Locker.
type persister struct{ s store.Store }

func (p persister) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	e, err := p.s.Load(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Token(), nil
}

func (p persister) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	return p.s.Save(ctx, key, store.EntryFromToken(tok))
}

func (p persister) Delete(ctx context.Context, key string) error { return p.s.Delete(ctx, key) }

func (p persister) Lock(ctx context.Context, key string) (func() error, error) {
	return p.s.Lock(ctx, key)
}
