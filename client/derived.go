package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// The tokens derived from a login (minted from its refresh token for other
// resources, see mintForResource) are stored under keys of their own. A
// later Login or Logout must drop every one of them, also those an earlier
// run minted for a resource this process never used: otherwise the next
// process to ask for that resource would be served the previous user's
// token. So the login keeps an index of its derived resources in the store,
// written before each mint, and read when they are dropped.

// extraDerived is the Extra field of the index entry: a JSON list of
// resource indicators.
const extraDerived = "resources"

// derivedIndexKey is the store key of the login's index of derived
// resources.
func (g *grant) derivedIndexKey() string {
	k := g.baseKey()
	k.Role = "derived-index"
	return k.String()
}

// loadDerived returns the resources listed in the index.
func (g *grant) loadDerived(ctx context.Context) ([]string, error) {
	e, err := g.store.Load(ctx, g.derivedIndexKey())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal([]byte(e.Extra[extraDerived]), &list); err != nil {
		return nil, failure("derived resources", "the stored index is unreadable", store.ErrCorrupt)
	}
	return list, nil
}

// recordDerived adds resources to the index unless they are listed. It runs
// under the login's lock (inside its Exchange), before the mint, so that no
// derived token is ever stored without its resource in the index.
func (g *grant) recordDerived(ctx context.Context, resources []string) error {
	list, err := g.loadDerived(ctx)
	if err != nil {
		return err
	}
	n := len(list)
	for _, r := range resources {
		if !slices.Contains(list, r) {
			list = append(list, r)
		}
	}
	if len(list) == n {
		return nil
	}
	b, _ := json.Marshal(list)
	return g.store.Save(ctx, g.derivedIndexKey(), &store.Entry{Extra: map[string]string{extraDerived: string(b)}})
}

// derivedResources returns the handles of every resource token derived from
// the login: those of Options.Resources (with several, each has its own
// token; one may be stored by an earlier run), those used through
// ForResource, and those the index lists (minted by an earlier run). The
// handles of the last kind are not registered with the Client; release
// closes them.
func (c *Client) derivedResources(ctx context.Context) (out []*Resource, release func()) {
	if len(c.grant.cfg.Resources) > 1 {
		for _, r := range c.grant.cfg.Resources {
			if _, err := c.ForResource(r); err != nil {
				c.grant.log.Debug("client: resource not usable", "error", err)
			}
		}
	}
	c.mu.Lock()
	have := map[string]bool{}
	for id, r := range c.resources {
		if id != "\x00default" && r.cache != nil {
			out = append(out, r)
			for _, x := range r.resources {
				have[x] = true
			}
		}
	}
	c.mu.Unlock()

	var temp []*Resource
	release = func() {
		for _, r := range temp {
			r.cache.Close()
		}
	}
	indexed, err := c.grant.loadDerived(ctx)
	if err != nil {
		c.grant.log.Warn("client: the index of derived resource tokens could not be read", "error", err)
	}
	for _, x := range indexed {
		if have[x] {
			continue
		}
		r, err := c.grant.unregisteredResource([]string{x})
		if err != nil {
			c.grant.log.Debug("client: resource not usable", "error", err)
			continue
		}
		temp = append(temp, r)
		out = append(out, r)
	}
	return out, release
}

// unregisteredResource returns a handle on the token cache of a derived
// resource, without an HTTP client and not registered with the Client: for
// dropping the token of a resource the program does not use.
func (g *grant) unregisteredResource(resources []string) (*Resource, error) {
	key := g.resourceKey(resources)
	cache, err := refresh.New(key.String(), refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return g.mintForResource(ctx, resources)
	}), g.cacheOptions(resources))
	if err != nil {
		return nil, inOp("token cache", err)
	}
	return &Resource{resources: resources, key: key, cache: cache}, nil
}

// dropDerivedTokens clears the token of every resource derived from the
// login, in memory and in the store. Each Clear first waits for a mint in
// flight on its resource, so none outlives it. The index keeps its
// resources: a mint with the new login may already have listed them again.
func (c *Client) dropDerivedTokens(ctx context.Context) {
	derived, release := c.derivedResources(ctx)
	defer release()
	for _, r := range derived {
		if err := r.cache.Clear(ctx); err != nil {
			c.grant.log.Warn("client: dropping a previous login's resource token failed", "error", err)
		}
	}
}
