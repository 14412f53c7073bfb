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
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// ErrClosed is returned by the methods of a closed Client.
var ErrClosed = refresh.ErrClosed

// Client is one configured OAuth client: it logs in, keeps tokens fresh in
// the store, and hands out HTTP clients that attach them. It is safe for
// concurrent use. Create it with [New]; release it with [Client.Close].
//
// Several Clients for the same credential (issuer, client, scopes,
// resources, profile) in one process share one token cache per token, so
// they never refresh the same refresh token twice (with rotation, the
// second refresh would present a spent token and could get the whole login
// revoked): the first one's HTTP settings, logger and refresh options serve
// them all, each one's Events hook sees every event, and they must use the
// same store: one value, or handles store.Open made for one backend
// ([store.SameBackend]); New fails with ErrInvalidConfig otherwise.
type Client struct {
	*grant // the token machinery, shared with the token caches' upstreams

	cfg     Options   // this Client's own settings (login UI among them)
	prompt  io.Writer // human-facing login messages
	origins []string  // API origins of the default token
	static  *oauth2.Token

	// betweenLoginSteps, nil outside tests, runs in Login between its two
	// last steps (publishing the new login, then dropping the tokens
	// derived from the previous one), so that a test can make a request
	// land exactly there.
	betweenLoginSteps func()

	mu        sync.Mutex // guards resources and closed
	resources map[string]*Resource
	closed    bool
}

// grant is what token requests need, fixed at New. The token caches'
// upstreams close over a grant, never over a *Client: a cache is shared by
// every Client of its key in the process and may outlive the Client that
// created it.
type grant struct {
	cfg            Options
	issuer         string // the issuer identifier ("" without one)
	keyIssuer      string // the issuer, or the token URL without one: the store key's issuer
	endpoints      Endpoints
	issRequired    bool // the server promised "iss" in authorization responses (RFC 9207)
	method         AuthMethod
	disco          *oauthwire.Discovery // nil without discovery
	discoKey       string               // discoveryCache entry held (until Close)
	discoCached    bool                 // disco came from a cache (the process's or the store), not the server just now
	resolveMu      sync.Mutex           // serialises ready
	resolved       atomic.Bool          // endpoints, method, disco and issRequired are set, and never change again
	discoErr       error                // the last failure of ready (under resolveMu)
	discoUnreached error                // why the server was not asked: disco is a kept document used for want of it
	bg             sync.WaitGroup       // the background revalidation of the discovery document
	bgCancel       context.CancelFunc   // ends it (Close)

	ep    *endpointClient
	dpop  *dpopConfig       // nil without DPoP
	base  http.RoundTripper // base transport for API calls
	store store.Store       // nil with a static token
	log   *slog.Logger
	now   func() time.Time
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
// It validates the options, opens the store, runs discovery when Issuer is
// set and prepares the default token cache. Discovery asks the server only
// when neither the process (Clients of one issuer that are open at the same
// time share one fetch, for at most an hour) nor the store (the document of
// an earlier run, see [Client.Logout]) has the document. When the server
// cannot be reached (or is busy) and no document is kept, New still
// returns a Client: Status and the local half of Logout need no server, and
// the first operation that does (a token request, Login, revocation) asks
// for the document again and reports the failure if it persists. A
// document that is wrong (another issuer, an unusable endpoint) fails New.
// It makes no token request: the first one happens on the first API call
// (client credentials) or at Login.
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
	cloneParamOptions(cfg)
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
	if err := g.initDPoP(); err != nil {
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
		// An explicit token bypasses discovery, the store and every grant,
		// and the keychain is never touched: in CI and containers there is
		// often no keychain, and a prompt to unlock one would hang the job.
		c.static = &oauth2.Token{AccessToken: cfg.AccessToken, TokenType: "Bearer"}
		g.issuer = cfg.Issuer
		_, err := c.resource(g.defaultResources(), c.origins, true)
		return err
	}

	// The store first: it holds the discovery document of earlier runs,
	// which spares the server a request at every start.
	st := cfg.Store
	if st == nil {
		opts := append([]func(*store.Options){func(o *store.Options) { o.Logger, o.Mode = g.log, cfg.StoreMode }}, cfg.StoreOptions...)
		st, err = store.Open(ctx, opts...)
		if err != nil {
			return inOp("opening the token store", err)
		}
	}
	g.store = st
	if s := st.Status(); s.Warning != "" {
		// Warned on every run, where a person sees it (on the prompt, since
		// many programs log nowhere), and in the logs.
		fmt.Fprintf(c.prompt, "tokenward: WARNING: %s\n", s.Warning)
		g.log.Warn("client: insecure token storage", "mode", string(s.Mode), "warning", s.Warning)
	}
	if err := g.ready(ctx); err != nil {
		if !offlineUsable(err) {
			return err
		}
		// The server cannot be reached and no document of it is kept:
		// what needs no server (Status, the local half of Logout) works
		// now, and the first operation that needs the server asks again.
		g.log.Warn("client: the authorization server cannot be reached; starting without its discovery document", "error", err)
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
		return failure(opConfig, fmt.Sprintf(format, a...), ErrInvalidConfig)
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
	if cfg.StoreMode != "" {
		if cfg.Store != nil {
			return bad("StoreMode and Store are both set: StoreMode chooses the store New opens, and Store replaces it")
		}
		if _, err := store.ParseMode(string(cfg.StoreMode)); err != nil {
			return bad("StoreMode: %s", plain(err))
		}
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
	if err := checkOptionParams(cfg); err != nil {
		return err
	}
	for _, u := range []string{cfg.Issuer, cfg.Endpoints.AuthURL, cfg.Endpoints.TokenURL, cfg.Endpoints.DeviceAuthURL, cfg.Endpoints.RevocationURL} {
		if u == "" {
			continue
		}
		if err := oauthwire.CheckSecureURL(u, cfg.AllowInsecureLoopback); err != nil {
			return inOp(opConfig, err)
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
		return failure(opConfig, "HTTP.RetryWaitMax is shorter than HTTP.RetryWaitMin", ErrInvalidConfig)
	}
	retries := h.RetryMax
	switch {
	case retries == 0:
		retries = 3
	case retries < 0:
		retries = 0
	}
	epBase := base
	if g.dpop != nil {
		epBase = dpopEndpoint{g: g, base: base}
	}
	g.ep = newEndpointClient(&http.Client{Transport: epBase}, g.log, timeout, budget, wmin, wmax, retries)
	return nil
}

func defDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// apiOrigins normalises the configured origins, or derives them from the
// resource indicator when there is exactly one, and checks that each is
// secure. With several resource indicators it derives none: the token they
// go with is requested without a resource indicator (a server issues one
// audience per access token), so it is not issued for any of them and must
// not be sent to all of them.
func (g *grant) apiOrigins(origins, resources []string) ([]string, error) {
	if len(origins) == 0 && len(resources) == 1 {
		u, err := url.Parse(resources[0])
		if err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			origins = []string{u.Scheme + "://" + u.Host}
		}
	}
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, failure(opConfig, fmt.Sprintf("API origin %q must be scheme://host[:port]", redact.URLString(o)), ErrInvalidConfig)
		}
		if err := oauthwire.CheckSecureURL(o, g.cfg.AllowInsecureLoopback); err != nil {
			return nil, failure(opConfig, "API origin "+plain(err), err)
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return out, nil
}

// baseKey is the store key of the login's token set (the one holding the
// refresh token).
func (g *grant) baseKey() store.Key {
	return store.Key{Issuer: g.keyIssuer, ClientID: g.cfg.ClientID, Scopes: g.cfg.Scopes, Resource: g.defaultResources(), Profile: g.cfg.Profile}
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
		c.grant.stopBackground()
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
// dpopAlg is the algorithm stored DPoP keys are read with.
type persister struct {
	s       store.Store
	dpopAlg string
}

// Load returns the stored token of key, nil when there is none. A stored
// DPoP key is parsed (once per process) and named in the token by its
// thumbprint, so that API requests find it.
func (p persister) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	e, err := p.s.Load(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tok := e.Token()
	if len(e.KeyPair) > 0 {
		hk, err := parseHeldKey(e.KeyPair, p.dpopAlg)
		if err != nil {
			// The parser's message describes the structure, never the key.
			return nil, fmt.Errorf("client: loading the stored DPoP key: %w", err)
		}
		bindKey(tok, hk)
	}
	return tok, nil
}

// Save stores tok under key.
func (p persister) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	return p.s.Save(ctx, key, store.EntryFromToken(tok))
}

// Delete removes key's entry.
func (p persister) Delete(ctx context.Context, key string) error { return p.s.Delete(ctx, key) }

// Lock takes the store's lock of key, across processes.
func (p persister) Lock(ctx context.Context, key string) (func() error, error) {
	return p.s.Lock(ctx, key)
}
