package client

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/httpretry"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// The discovery document is kept in the store, next to the credential, so
// that a process with a valid stored token starts and makes its first API
// call without asking the authorization server anything, and so that
// Status and the local half of Logout work while the server is down.
const (
	// storedDiscoveryFresh is the age up to which a stored document is used
	// as it is. An older one is used too, and fetched again in the
	// background after New, so that a server that changed its endpoints is
	// seen by the next process.
	storedDiscoveryFresh = discoveryTTL
	// storedDiscoveryMaxAge bounds how old a stored document New uses
	// without asking the server first. Older, New fetches the document; it
	// falls back to the stored one only when the server cannot be reached
	// (or is busy), so that the offline operations still work.
	storedDiscoveryMaxAge = 7 * 24 * time.Hour
	// storedDiscoveryMaxSize: larger documents are not kept (the keychain
	// of some systems holds little); such a Client asks the server at
	// every start.
	storedDiscoveryMaxSize = 64 << 10
	// revalidateDelay is how long after New the background revalidation
	// starts.
	revalidateDelay = 5 * time.Second
)

// The Extra fields of the discovery entry.
const (
	extraDocument  = "document"
	extraFetchedAt = "fetched_at"
)

// discoveryKey is the store key of the issuer's document as this client
// keeps it. It names the client but no profile or scopes: every account of
// the client shares one document (like the process's cache), while another
// application (another client ID), which may reach the server through a
// transport of its own, never uses a document this one fetched. Logout
// deletes it with the login, so that nothing is left behind; another login
// of the client then fetches it again at its next start.
func (g *grant) discoveryKey() string {
	return store.Key{Issuer: g.cfg.Issuer, ClientID: g.cfg.ClientID, Role: "discovery"}.String()
}

// storedDiscovery is a document read back from the store.
type storedDiscovery struct {
	doc *oauthwire.Discovery
	at  time.Time
}

// age is how long ago the document was fetched; a time in the future (a
// clock set back) counts as too old, so the document is checked again.
func (s *storedDiscovery) age(now time.Time) time.Duration {
	if s.at.After(now.Add(time.Minute)) {
		return storedDiscoveryMaxAge
	}
	return now.Sub(s.at)
}

// loadDiscovery returns the stored document, or nil when there is none or it
// cannot be used (then the server is asked, as without one). A stored
// document passes the checks of a fetched one again: the issuer must be the
// configured one and every endpoint usable.
func (g *grant) loadDiscovery(ctx context.Context) *storedDiscovery {
	if g.store == nil {
		return nil
	}
	e, err := g.store.Load(ctx, g.discoveryKey())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			g.log.Debug("client: the stored discovery document could not be read; asking the server", "error", err)
		}
		return nil
	}
	at, err := time.Parse(time.RFC3339Nano, e.Extra[extraFetchedAt])
	if err != nil {
		g.log.Debug("client: the stored discovery document has no valid time; asking the server")
		return nil
	}
	doc, err := oauthwire.ParseDiscovery([]byte(e.Extra[extraDocument]), g.cfg.Issuer)
	if err == nil {
		err = doc.CheckSecure(g.cfg.AllowInsecureLoopback)
	}
	if err != nil {
		g.log.Debug("client: the stored discovery document is not usable; asking the server", "error", redact.String(err.Error()))
		return nil
	}
	return &storedDiscovery{doc: doc, at: at}
}

// saveDiscovery keeps doc, fetched at, in the store. A failure costs only
// the offline start, so it is logged, not returned.
func (g *grant) saveDiscovery(ctx context.Context, doc *oauthwire.Discovery, at time.Time) {
	if g.store == nil || len(doc.Raw) == 0 {
		return
	}
	if len(doc.Raw) > storedDiscoveryMaxSize {
		g.log.Debug("client: the discovery document is too large to keep; the server is asked at every start", "bytes", len(doc.Raw))
		return
	}
	e := &store.Entry{Extra: map[string]string{
		extraDocument:  string(doc.Raw),
		extraFetchedAt: at.UTC().Format(time.RFC3339Nano),
	}}
	if err := g.store.Save(ctx, g.discoveryKey(), e); err != nil {
		g.log.Debug("client: the discovery document could not be kept in the store; the server is asked at the next start", "error", err)
	}
}

// revalidateDiscovery fetches the document again in the background and
// keeps the new one for the next start (this Client goes on with the one it
// has). It ends with Close. A document that no longer names this issuer is
// deleted, so that the next start asks the server and reports the mismatch.
func (g *grant) revalidateDiscovery() {
	bg, cancel := context.WithCancel(context.Background())
	g.bgCancel = cancel
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		defer cancel()
		// Not at once: the program's first requests come first, and the
		// start costs the server nothing.
		t := time.NewTimer(revalidateDelay)
		defer t.Stop()
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		ctx, cancelFetch := context.WithTimeout(bg, g.ep.timeout)
		defer cancelFetch()
		doc, err := g.fetchFromServer(ctx)
		switch {
		case err == nil:
			if err := doc.CheckSecure(g.cfg.AllowInsecureLoopback); err != nil {
				g.log.Warn("client: the revalidated discovery document names an endpoint tokenward may not use; it was not kept", "error", redact.String(err.Error()))
				return
			}
			g.saveDiscovery(ctx, doc, g.now())
		case errors.Is(err, ErrIssuerMismatch):
			g.log.Warn("client: the issuer's discovery document now names another issuer; the stored one was deleted", "error", err)
			if err := g.store.Delete(ctx, g.discoveryKey()); err != nil && !errors.Is(err, store.ErrNotFound) {
				g.log.Debug("client: deleting the stored discovery document failed", "error", err)
			}
		default:
			g.log.Debug("client: revalidating the discovery document failed; the stored one stays in use", "error", err)
		}
	}()
}

// stopBackground cancels the background revalidation and waits for it.
func (g *grant) stopBackground() {
	if g.bgCancel != nil {
		g.bgCancel()
	}
	g.bg.Wait()
}

// offlineUsable reports whether err, a failed discovery, leaves the server
// unreachable or busy: then a stored document, however old, is better than
// none. A wrong or unusable document never is.
func offlineUsable(err error) bool {
	return !errors.Is(err, ErrIssuerMismatch) && !errors.Is(err, ErrInvalidConfig) &&
		(errors.Is(err, ErrNetwork) || errors.Is(err, ErrTemporarilyUnavailable))
}

// ready settles what requests to the server need: the endpoints (from the
// configuration and discovery) and the client authentication method. New
// calls it; when the server could not be reached then, every operation that
// needs the server calls it again first. Once it has succeeded the fields it
// set never change, so that reading them after ready returned nil is safe
// from any goroutine.
func (g *grant) ready(ctx context.Context) error {
	if g.resolved.Load() {
		return nil
	}
	g.resolveMu.Lock()
	defer g.resolveMu.Unlock()
	if g.resolved.Load() {
		return nil
	}
	err := g.resolve(ctx)
	if err == nil {
		// Before any token request: a proof the server cannot check
		// would only be refused.
		err = g.checkDPoPAlg()
	}
	if err != nil {
		g.releaseDiscovery()
		g.discoErr = err
		return err
	}
	g.resolved.Store(true)
	return nil
}

// readyNow is ready for code that holds a credential's lock (a token cache's
// upstream): it never asks the server, since a slow discovery would hold
// the lock, and a failure there would read as a lost token request. Without
// the endpoints it returns the last discovery failure, marked as not sent;
// the callers of the token caches (readySource) ask the server first,
// outside the lock.
func (g *grant) readyNow() error {
	if g.resolved.Load() {
		return nil
	}
	g.resolveMu.Lock()
	err := g.discoErr
	g.resolveMu.Unlock()
	if err == nil {
		err = failure(opDiscovery, "the server's endpoints are not known yet", ErrDiscovery, ErrTemporarilyUnavailable)
	}
	return &classified{err: err, class: httpretry.ErrNotSent}
}

// readySource is a token cache as the Client hands it out: before a token
// is asked for, it makes sure the endpoints are known (ready), outside the
// cache's lock. A failure is left to the cache, which answers with a valid
// token it holds or with the failure (readyNow). The cache's other methods
// (the transport's feedback on rejected tokens among them) are its own.
type readySource struct {
	g *grant
	*refresh.Cache
}

// Token returns the cache's token, once the endpoints are known.
func (s readySource) Token(ctx context.Context) (*oauth2.Token, error) {
	if !s.g.resolved.Load() {
		_ = s.g.ready(ctx)
	}
	return s.Cache.Token(ctx)
}

func (g *grant) resolve(ctx context.Context) error {
	if err := g.discover(ctx, false); err != nil {
		return err
	}
	err := g.chooseAuthMethod()
	if err == nil || !g.discoCached {
		return err
	}
	// A document kept from earlier may predate a change of the server's
	// configuration: the server has the last word.
	g.log.Debug("client: the kept discovery document does not fit the configuration; asking the server", "error", err)
	g.releaseDiscovery()
	if err := g.discover(ctx, true); err != nil {
		return err
	}
	err = g.chooseAuthMethod()
	if err != nil && g.discoUnreached != nil {
		// The kept document does not fit, and a current one could not be
		// fetched: both causes, so that the person can tell a server that
		// is down from a configuration that is wrong.
		return failure(opDiscovery, "the kept discovery document does not fit the configuration ("+plain(err)+"), and the server could not be reached for a current one ("+plain(g.discoUnreached)+")", ErrDiscovery, err, g.discoUnreached)
	}
	return err
}
