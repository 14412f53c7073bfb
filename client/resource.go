package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

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

// cacheOptions configures the token cache of one of the grant's tokens.
func (g *grant) cacheOptions(resources []string) func(*refresh.Options) {
	return func(o *refresh.Options) {
		o.Persister = persister{s: g.store, dpopAlg: g.cfg.DPoPAlg}
		o.Logger = g.log
		o.OnEvent = g.refreshEvent(resources)
		for _, f := range g.cfg.RefreshOptions {
			f(o)
		}
		if types := g.tokenTypes(); types != nil {
			// Set last: which tokens the credential can use is the
			// client's decision, not a tuning knob.
			o.TokenTypes = types
		}
	}
}

// loginUpstream is the upstream of the default token: client credentials,
// or the refresh token of a login.
func (g *grant) loginUpstream() refresh.Upstream {
	resources := g.defaultResources()
	if g.cfg.Grant == GrantClientCredentials {
		return refresh.UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return g.clientCredentials(ctx, cur, resources)
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
			return nil, failure(opConfig, "resource already registered with other origins", ErrInvalidConfig)
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
			return nil, inOp("token cache", err)
		}
		r.cache = cache
		src = readySource{g, cache}
	}
	if len(origins) > 0 {
		tr, err := transport.New(src, func(t *transport.Options) {
			t.Base = g.base
			t.Origins = origins
			t.AllowInsecureLoopback = g.cfg.AllowInsecureLoopback
			t.RejectOtherOrigins = g.cfg.RejectOtherOrigins
			t.Logger = g.log
			if g.dpop != nil && c.static == nil {
				t.Prepare = g.prepareDPoP
				t.PrepareTokenTypes = []string{"DPoP"}
				t.Answered = g.answeredDPoP
			}
		})
		if err != nil {
			if r.cache != nil {
				r.cache.Close()
			}
			return nil, inOp("transport", err)
		}
		r.tr = tr
	}
	c.resources[id] = r
	return r, nil
}

// ForResource returns the token handle for another API of the same login:
// resource is its RFC 8707 resource indicator and origins the origins its
// token may be sent to (default: the resource's own origin). Each resource
// has its own access token, requested for that resource alone, cached and
// refreshed on its own and sent only to its origins, and the login's one
// refresh token mints them all (rotations are saved before use). It is how
// a Client with several Options.Resources calls each of those APIs. For a
// login, list every resource in Options.Resources so the authorization
// covers it.
func (c *Client) ForResource(resource string, origins ...string) (*Resource, error) {
	if c.static != nil {
		return nil, failure(opConfig, "a fixed access token serves only the configured API origins", ErrInvalidConfig)
	}
	u, err := url.Parse(resource)
	if err != nil || !u.IsAbs() || u.Fragment != "" {
		return nil, failure(opConfig, fmt.Sprintf("resource %q is not an absolute URI without fragment (RFC 8707)", redact.URLString(resource)), ErrInvalidConfig)
	}
	o, err := c.grant.apiOrigins(origins, []string{resource})
	if err != nil {
		return nil, err
	}
	if len(o) == 0 {
		return nil, failure(opConfig, fmt.Sprintf("no origin for resource %q", redact.URLString(resource)), ErrInvalidConfig)
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

// HTTPClient returns an *http.Client whose requests to the default token's
// origins carry that token, refreshed in the background: Options.APIOrigins,
// or, when that is empty, the origin of the one resource in
// Options.Resources. Requests to other origins (including redirects to
// them) carry none, or fail with ErrOriginNotAllowed under
// Options.RejectOtherOrigins. ctx is not retained; it exists for symmetry
// with the other calls.
//
// It fails with ErrInvalidConfig when the default token has no origin: with
// several Options.Resources and no APIOrigins the default token is issued
// for none of those APIs, so each API's client comes from
// [Client.ForResource] (c.ForResource(api) for each, each with a token of
// its own).
func (c *Client) HTTPClient(ctx context.Context) (*http.Client, error) {
	r, err := c.defaultResource()
	if err != nil {
		return nil, err
	}
	if r.tr == nil && len(c.cfg.Resources) > 1 {
		msg := "Options.Resources lists several APIs and Options.APIOrigins is empty: the default token is requested without a resource indicator, so it is issued for none of them and is sent to none; "
		if c.static != nil {
			msg += "set Options.APIOrigins to the origins that accept the fixed access token"
		} else {
			msg += "use ForResource(api) and its HTTPClient for each API (each gets a token of its own), or set Options.APIOrigins to the origins that accept the default token"
		}
		return nil, failure(opConfig, msg, ErrInvalidConfig)
	}
	return r.HTTPClient(ctx)
}

// Token returns the default access token, refreshing it if needed. The token
// never carries the refresh token and must not be modified. Most code should
// use HTTPClient instead, which scopes the token to its origins. With
// Options.DPoP the token's type is "DPoP" and it is useless without a
// fresh proof of the key for each request, which only HTTPClient adds:
// sent as it is (or through oauth2.Transport) it is refused with 401.
//
// The *oauth2.Token is golang.org/x/oauth2's type: printing it with %v
// shows the access token. Print [Client.Status] instead.
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
// ErrClosed. With Options.DPoP, oauth2.Transport cannot send its tokens
// (see [Client.Token]); use HTTPClient.
func (c *Client) TokenSource() oauth2.TokenSource {
	r, err := c.defaultResource()
	if err != nil {
		return errSource{err}
	}
	return r.TokenSource()
}

type errSource struct{ err error }

// Token returns the error.
func (s errSource) Token() (*oauth2.Token, error) { return nil, s.err }

// HTTPClient returns an *http.Client that sends this resource's token to its
// origins only. See [Client.HTTPClient].
func (r *Resource) HTTPClient(ctx context.Context) (*http.Client, error) {
	if r.tr == nil {
		return nil, failure(opConfig, "no API origin configured for this token (set Options.APIOrigins, or one http(s) resource in Options.Resources)", ErrInvalidConfig)
	}
	return &http.Client{Transport: r.tr}, nil
}

// Token returns this resource's access token, refreshing it if needed.
func (r *Resource) Token(ctx context.Context) (*oauth2.Token, error) {
	if r.cache == nil {
		return r.c.static, nil
	}
	return readySource{r.c.grant, r.cache}.Token(ctx)
}

// TokenSource returns this resource's token as an oauth2.TokenSource.
func (r *Resource) TokenSource() oauth2.TokenSource {
	if r.cache == nil {
		return oauth2.StaticTokenSource(r.c.static)
	}
	return refresh.TokenSource(readySource{r.c.grant, r.cache})
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

// resourceKey is the store key of an access token minted for resources
// from the login's refresh token.
func (g *grant) resourceKey(resources []string) store.Key {
	k := g.baseKey()
	k.Resource, k.Role = resources, "resource"
	return k
}
