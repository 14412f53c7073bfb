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

// ErrClosed is returned by the methods of a closed Client.
var ErrClosed = refresh.ErrClosed

// Client is one configured OAuth client: it logs in, keeps tokens fresh in
// the store, and hands out HTTP clients that attach them. It is safe for
// concurrent use. Create it with [New]; release it with [Client.Close].
//
// Several Clients for the same credential (issuer, client, scopes,
// resources, profile) in one process share one token cache per token, so
// they never refresh the same refresh token twice (PITFALLS O-02): the
// first one's HTTP settings, logger and refresh options serve them all, each
// one's Events hook sees every event, and they must use the same store (New
// fails with ErrInvalidConfig otherwise).
type Client struct {
	*grant // the token machinery, shared with the token caches' upstreams

	cfg     Options   // this Client's own settings (login UI among them)
	prompt  io.Writer // human-facing login messages
	origins []string  // API origins of the default token
	static  *oauth2.Token

	mu        sync.Mutex // guards resources and closed
	resources map[string]*Resource
	closed    bool
}

// grant is what token requests need, fixed at New. The token caches'
// upstreams close over a grant, never over a *Client: a cache is shared by
// every Client of its key in the process and may outlive the Client that
// created it.
type grant struct {
	cfg         Options
	issuer      string // the issuer identifier ("" without one)
	keyIssuer   string // the issuer, or the token URL without one: the store key's issuer
	endpoints   Endpoints
	issRequired bool // the server promised "iss" in authorization responses (RFC 9207)
	method      AuthMethod
	disco       *oauthwire.Discovery // nil without discovery
	discoKey    string               // discoveryCache entry held (until Close)

	ep    *endpointClient
	base  http.RoundTripper // base transport for API calls
	store store.Store       // nil with a static token
	log   *slog.Logger
	now   func() time.Time
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

// New returns a Client configured by optFns, which set the fields of
// [Options]:
//
//	c, err := client.New(ctx, func(o *client.Options) {
//		o.Issuer = "https://login.example.com"
//		o.ClientID = "my-cli"
//		o.Resources = []string{"https://api.example.com"}
//	})
//
// It validates the options, runs discovery when Issuer is set (Clients of
// one issuer that are open at the same time share one fetch, for at most an
// hour), opens the store and prepares the default token cache. It makes no
// token request: the first one happens on the first API call (client
// credentials) or at Login.
func New(ctx context.Context, optFns ...func(*Options)) (*Client, error) {
	var cfg Options
	for _, fn := range optFns {
		if fn != nil {
			fn(&cfg)
		}
	}
	g := &grant{cfg: cfg, now: time.Now}
	c := &Client{grant: g, cfg: cfg, resources: map[string]*Resource{}}
	if err := c.init(ctx); err != nil {
		c.closeResources()
		return nil, err
	}
	return c, nil
}

func (c *Client) init(ctx context.Context) error {
	g := c.grant
	cfg := &g.cfg
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.Resources = slices.Clone(cfg.Resources)
	cfg.APIOrigins = slices.Clone(cfg.APIOrigins)
	g.log = cfg.Logger
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
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
	if cfg.AccessToken == "" && cfg.AccessTokenEnv != "" {
		cfg.AccessToken = os.Getenv(cfg.AccessTokenEnv)
	}
	c.cfg = *cfg
	if err := g.validate(); err != nil {
		return err
	}
	if err := g.initHTTP(); err != nil {
		return err
	}
	origins, err := g.apiOrigins(cfg.APIOrigins, cfg.Resources)
	if err != nil {
		return err
	}
	c.origins = origins

	if cfg.AccessToken != "" {
		// S-04: an explicit token bypasses discovery, the store and every
		// grant; the keychain is never touched.
		c.static = &oauth2.Token{AccessToken: cfg.AccessToken, TokenType: "Bearer"}
		g.issuer = cfg.Issuer
		_, err := c.resource(g.defaultResources(), c.origins, true)
		return err
	}

	if err := g.discover(ctx); err != nil {
		return err
	}
	if err := g.chooseAuthMethod(); err != nil {
		return err
	}

	st := cfg.Store
	if st == nil {
		opts := append([]func(*store.Options){func(o *store.Options) { o.Logger = g.log }}, cfg.StoreOptions...)
		st, err = store.Open(ctx, opts...)
		if err != nil {
			return fmt.Errorf("client: opening the token store: %w", err)
		}
	}
	g.store = st
	if s := st.Status(); s.Warning != "" {
		// Warned on every run, where a person sees it (S-02), and in logs.
		fmt.Fprintf(c.prompt, "tokenward: WARNING: %s\n", s.Warning)
		g.log.Warn("client: insecure token storage", "mode", string(s.Mode), "warning", s.Warning)
	}
	if err := hub.join(g.baseKey().String(), c); err != nil {
		return err
	}
	_, err = c.resource(g.defaultResources(), c.origins, true)
	return err
}

// validate checks the configuration before anything touches the network.
func (g *grant) validate() error {
	cfg := &g.cfg
	bad := func(format string, a ...any) error {
		return fmt.Errorf("client: %w: "+format, append([]any{ErrInvalidConfig}, a...)...)
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
	if cfg.AuthMethod == AuthNone && (cfg.ClientSecret != "" || cfg.PrivateKey != nil) {
		return bad("AuthMethod none with a ClientSecret or PrivateKey: the credential would be ignored; remove it or choose its method")
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
func (g *grant) initHTTP() error {
	h := g.cfg.HTTP
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
	g.base = base
	timeout := defDur(h.Timeout, 30*time.Second)
	budget := defDur(h.RetryBudget, 20*time.Second)
	wmin := defDur(h.RetryWaitMin, 200*time.Millisecond)
	wmax := defDur(h.RetryWaitMax, 5*time.Second)
	if wmax < wmin {
		return fmt.Errorf("client: %w: HTTP.RetryWaitMax is shorter than HTTP.RetryWaitMin", ErrInvalidConfig)
	}
	retries := h.RetryMax
	switch {
	case retries == 0:
		retries = 3
	case retries < 0:
		retries = 0
	}
	g.ep = newEndpointClient(&http.Client{Transport: base}, g.log, timeout, budget, wmin, wmax, retries)
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
func (g *grant) apiOrigins(origins, resources []string) ([]string, error) {
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
			return nil, fmt.Errorf("client: %w: API origin %q must be scheme://host[:port]", ErrInvalidConfig, redact.URLString(o))
		}
		if err := oauthwire.CheckSecureURL(o, g.cfg.AllowInsecureLoopback); err != nil {
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
func (g *grant) defaultResources() []string {
	if len(g.cfg.Resources) == 1 {
		return g.cfg.Resources
	}
	return nil
}

// allResources are the resource indicators of authorization requests: every
// resource the login should cover.
func (c *Client) allResources() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.grant.cfg.Resources)
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
func (g *grant) baseKey() store.Key {
	return store.Key{Issuer: g.keyIssuer, ClientID: g.cfg.ClientID, Scopes: g.cfg.Scopes, Resource: g.defaultResources(), Profile: g.cfg.Profile}
}

// resourceKey is the store key of an access token minted for resources
// from the login's refresh token.
func (g *grant) resourceKey(resources []string) store.Key {
	k := g.baseKey()
	k.Resource, k.Role = resources, "resource"
	return k
}

// cacheOptions configures the token cache of one of the grant's tokens.
func (g *grant) cacheOptions(resources []string) func(*refresh.Options) {
	return func(o *refresh.Options) {
		o.Persister = persister{g.store}
		o.Logger = g.log
		o.OnEvent = g.refreshEvent(resources)
		for _, f := range g.cfg.RefreshOptions {
			f(o)
		}
	}
}

// loginUpstream is the upstream of the default token: client credentials,
// or the refresh token of a login.
func (g *grant) loginUpstream() refresh.Upstream {
	resources := g.defaultResources()
	if g.cfg.Grant == GrantClientCredentials {
		return refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			return g.clientCredentials(ctx, resources)
		})
	}
	return refresh.UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		return g.refreshGrant(ctx, cur, resources)
	})
}

// loginCache opens a handle on the default token's cache (shared in the
// process); the caller closes it.
func (g *grant) loginCache() (*refresh.Cache, error) {
	return refresh.New(g.baseKey().String(), g.loginUpstream(), g.cacheOptions(nil))
}

// resource returns (creating on first use) the token handle for resources.
func (c *Client) resource(resources, origins []string, isDefault bool) (*Resource, error) {
	g := c.grant
	id := strings.Join(resources, "\x00")
	if isDefault {
		id = "\x00default"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if r, ok := c.resources[id]; ok {
		if len(origins) > 0 && !slices.Equal(origins, r.origins) {
			return nil, fmt.Errorf("client: %w: resource already registered with other origins", ErrInvalidConfig)
		}
		return r, nil
	}
	r := &Resource{c: c, resources: slices.Clone(resources), origins: origins}
	var src transport.Source
	if c.static != nil {
		tok := c.static
		src = transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil })
	} else {
		var cache *refresh.Cache
		var err error
		if isDefault {
			r.key = g.baseKey()
			cache, err = g.loginCache()
		} else {
			r.key = g.resourceKey(resources)
			cache, err = refresh.New(r.key.String(), refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
				return g.mintForResource(ctx, resources)
			}), g.cacheOptions(resources))
		}
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		r.cache = cache
		src = cache
	}
	if len(origins) > 0 {
		tr, err := transport.New(src, func(t *transport.Options) {
			t.Base = g.base
			t.Origins = origins
			t.AllowInsecureLoopback = g.cfg.AllowInsecureLoopback
			t.Logger = g.log
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
// login, list every resource in Options.Resources so the authorization covers
// it.
func (c *Client) ForResource(resource string, origins ...string) (*Resource, error) {
	if c.static != nil {
		return nil, fmt.Errorf("client: %w: a fixed access token serves only the configured API origins", ErrInvalidConfig)
	}
	u, err := url.Parse(resource)
	if err != nil || !u.IsAbs() || u.Fragment != "" {
		return nil, fmt.Errorf("client: %w: resource %q is not an absolute URI without fragment (RFC 8707)", ErrInvalidConfig, redact.URLString(resource))
	}
	o, err := c.grant.apiOrigins(origins, []string{resource})
	if err != nil {
		return nil, err
	}
	if len(o) == 0 {
		return nil, fmt.Errorf("client: %w: no origin for resource %q", ErrInvalidConfig, redact.URLString(resource))
	}
	return c.resource([]string{resource}, o, false)
}

// defaultResource returns the default token's handle, or ErrClosed.
func (c *Client) defaultResource() (*Resource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.resources["\x00default"]
	if c.closed || r == nil {
		return nil, ErrClosed
	}
	return r, nil
}

// HTTPClient returns an *http.Client whose requests to Options.APIOrigins
// carry the default access token, refreshed in the background; requests to
// other origins (including redirects to them) carry none. ctx is not
// retained; it exists for symmetry with the other calls. It fails with
// ErrInvalidConfig when no API origin is configured.
func (c *Client) HTTPClient(ctx context.Context) (*http.Client, error) {
	r, err := c.defaultResource()
	if err != nil {
		return nil, err
	}
	return r.HTTPClient(ctx)
}

// Token returns the default access token, refreshing it if needed. The token
// never carries the refresh token and must not be modified. Most code should
// use HTTPClient instead, which scopes the token to its origins.
func (c *Client) Token(ctx context.Context) (*oauth2.Token, error) {
	r, err := c.defaultResource()
	if err != nil {
		return nil, err
	}
	return r.Token(ctx)
}

// TokenSource returns the default token as an oauth2.TokenSource for code
// built on golang.org/x/oauth2. Each call of its Token method is bounded by
// the cache's own refresh timeout. After Close its Token fails with
// ErrClosed.
func (c *Client) TokenSource() oauth2.TokenSource {
	r, err := c.defaultResource()
	if err != nil {
		return errSource{err}
	}
	return r.TokenSource()
}

type errSource struct{ err error }

func (s errSource) Token() (*oauth2.Token, error) { return nil, s.err }

// HTTPClient returns an *http.Client that sends this resource's token to its
// origins only. See [Client.HTTPClient].
func (r *Resource) HTTPClient(ctx context.Context) (*http.Client, error) {
	if r.tr == nil {
		return nil, fmt.Errorf("client: %w: no API origin configured for this token (set Options.APIOrigins or a resource URL)", ErrInvalidConfig)
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

// Close releases this Client's handles on the token caches (a cache shared
// with another open Client lives on). It does not log out. It is
// idempotent; afterwards the other methods return ErrClosed.
func (c *Client) Close() error {
	c.closeResources()
	return nil
}

func (c *Client) closeResources() {
	c.mu.Lock()
	rs := c.resources
	c.resources = map[string]*Resource{}
	wasClosed := c.closed
	c.closed = true
	c.mu.Unlock()
	if !wasClosed {
		c.grant.releaseDiscovery()
		if c.grant.store != nil {
			hub.leave(c.grant.baseKey().String(), c)
		}
	}
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
