package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
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

// holdDiscovery records that g uses the document cached under key. A
// document not taken from the cache (fresh, or from the store) replaces the
// entry's, with the time it was fetched: a stored document keeps its age, so
// that the process does not take an old one for a fresh one.
func (g *grant) holdDiscovery(key string, doc *oauthwire.Discovery, fetchedAt time.Time) {
	discoveryCache.Lock()
	defer discoveryCache.Unlock()
	e, ok := discoveryCache.m[key]
	if !ok || !fetchedAt.IsZero() {
		e.doc, e.at = doc, fetchedAt
		if fetchedAt.IsZero() {
			e.at = g.now()
		}
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
// must equal the configured one exactly. Its errors match ErrDiscovery and
// read "client: discovery: ...".
func (g *grant) discover(ctx context.Context, force bool) error {
	g.endpoints = g.cfg.Endpoints
	g.issuer, g.keyIssuer = g.cfg.Issuer, g.cfg.Issuer
	if g.cfg.Issuer == "" {
		// Without an issuer the token URL identifies the server in store
		// keys; authorization responses' iss cannot be checked.
		g.keyIssuer = g.cfg.Endpoints.TokenURL
		return nil
	}
	doc, err := g.fetchDiscovery(ctx, force)
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
		return failure(opDiscovery, "the document of "+redact.URLString(g.issuer)+" names an endpoint tokenward may not use: "+plain(err), ErrDiscovery, err)
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
	fill(&g.endpoints.PARURL, doc.PushedAuthorizationRequestEndpoint)
	g.issRequired = doc.AuthorizationResponseIssParameterSupported
	g.disco = doc
	if g.endpoints.TokenURL == "" {
		return failure(opDiscovery, "the document of "+redact.URLString(g.issuer)+" has no token_endpoint", ErrDiscovery, ErrBadResponse)
	}
	return nil
}

// fetchDiscovery returns the issuer's document: from the process's cache,
// else from the store (see discovery_store.go), else fetched from its
// well-known URLs (the RFC 8414 one first) and then kept in the store. With
// force it skips both caches (but falls back to the stored document when the
// server cannot be reached).
func (g *grant) fetchDiscovery(ctx context.Context, force bool) (*oauthwire.Discovery, error) {
	cacheKey := g.cfg.Issuer
	g.discoCached, g.discoUnreached = false, nil
	discoveryCache.Lock()
	e, ok := discoveryCache.m[cacheKey]
	discoveryCache.Unlock()
	if !force && ok && g.now().Sub(e.at) < discoveryTTL {
		g.holdDiscovery(cacheKey, e.doc, time.Time{})
		g.discoCached = true
		return e.doc, nil
	}
	stored := g.loadDiscovery(ctx)
	if !force && stored != nil && stored.age(g.now()) < storedDiscoveryMaxAge {
		g.discoCached = true
		g.holdDiscovery(cacheKey, stored.doc, stored.at)
		if stored.age(g.now()) >= storedDiscoveryFresh {
			g.revalidateDiscovery()
		}
		return stored.doc, nil
	}
	doc, err := g.fetchFromServer(ctx)
	if err != nil {
		if stored != nil && offlineUsable(err) {
			g.log.Warn("client: the authorization server cannot be reached; using the discovery document kept since "+stored.at.UTC().Format(time.RFC3339), "error", err)
			g.holdDiscovery(cacheKey, stored.doc, stored.at)
			g.discoUnreached = err
			return stored.doc, nil
		}
		return nil, err
	}
	g.holdDiscovery(cacheKey, doc, g.now())
	g.saveDiscovery(ctx, doc, g.now())
	return doc, nil
}

// fetchFromServer fetches the issuer's document from its well-known URLs,
// the RFC 8414 one first.
func (g *grant) fetchFromServer(parent context.Context) (*oauthwire.Discovery, error) {
	// One bound for the whole discovery, both well-known URLs included.
	ctx, cancel := context.WithTimeout(parent, g.ep.timeout)
	defer cancel()
	oauthURL, openidURL, err := oauthwire.WellKnownURLs(g.cfg.Issuer)
	if err != nil {
		return nil, failure(opConfig, "Issuer: "+plain(err), ErrInvalidConfig, err)
	}
	var errs []error
	for _, u := range []string{oauthURL, openidURL} {
		doc, err := g.getDiscovery(ctx, u)
		if err == nil {
			return doc, nil
		}
		errs = append(errs, err)
		if errors.Is(err, ErrIssuerMismatch) || ctx.Err() != nil {
			break
		}
	}
	// Every URL tried, in one message: the first may have answered 404
	// and the second been unreachable.
	details := make([]string, len(errs))
	for i, err := range errs {
		var ee *EndpointError
		if errors.As(err, &ee) {
			details[i] = ee.detail()
		} else {
			details[i] = plain(err)
		}
	}
	classes := []error{ErrDiscovery}
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The server's silence, not the caller's deadline: the same
		// timeout as every other endpoint's, under the same name.
		classes = append(classes, ErrTokenEndpointTimeout)
		details = append(details, fmt.Sprintf("no answer within %s (Options.HTTP.Timeout)", g.ep.timeout))
	}
	return nil, failure(opDiscovery, strings.Join(details, "; "), append(classes, errs...)...)
}

// errNoDiscoveryDocument: a well-known URL answered, but not with a
// discovery document.
var errNoDiscoveryDocument = errors.New("no discovery document at this URL")

// serverBusy is a 5xx or 429 answer from an endpoint that is not the
// token endpoint; it matches ErrTemporarilyUnavailable.
type serverBusy struct{}

// Error says the server is busy.
func (serverBusy) Error() string { return "the server is temporarily unavailable" }

// Is matches ErrTemporarilyUnavailable.
func (serverBusy) Is(target error) bool { return target == ErrTemporarilyUnavailable }

// getDiscovery fetches and parses the document at one well-known URL.
func (g *grant) getDiscovery(ctx context.Context, u string) (*oauthwire.Discovery, error) {
	ep := redact.URLString(u)
	fail := func(status int, err error) error {
		return &EndpointError{Op: opDiscovery, Endpoint: ep, Status: status, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fail(0, failure(opConfig, "the discovery URL is not a URL", ErrInvalidConfig))
	}
	req.Header.Set("Accept", "application/json")
	hc := g.ep.rc.HTTPClient // no redirects, no total timeout (ctx has it)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fail(0, netCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	if err != nil {
		return nil, fail(0, netCause(err))
	}
	if resp.StatusCode != http.StatusOK {
		// Not a token endpoint: an OAuth error body means nothing here.
		var cause error = errNoDiscoveryDocument
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			cause = serverBusy{}
		}
		return nil, fail(resp.StatusCode, cause)
	}
	if len(body) > oauthwire.MaxBody {
		return nil, fail(0, badResponse(oauthwire.ErrBodyTooLarge))
	}
	doc, err := oauthwire.ParseDiscovery(body, g.cfg.Issuer)
	if err != nil {
		if errors.Is(err, oauthwire.ErrIssuerMismatch) {
			return nil, fail(0, &detailError{msg: plain(err), errs: []error{ErrIssuerMismatch, err}})
		}
		return nil, fail(0, badResponse(err))
	}
	return doc, nil
}
