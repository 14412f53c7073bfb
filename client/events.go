package client

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// EventKind says what an Event reports. It is refresh.EventKind: the token
// cache's kinds reach the client's Events hook as they are, with the
// client's own kinds (login, logout, clock skew) beside them.
type EventKind = refresh.EventKind

// Event kinds: the token cache's, and the client's own.
const (
	EventRefreshed      = refresh.EventRefreshed
	EventRefreshFailed  = refresh.EventRefreshFailed
	EventReauthRequired = refresh.EventReauthRequired
	EventPersistFailed  = refresh.EventPersistFailed
	// EventPersisted: a token whose save had failed is stored now.
	EventPersisted            = refresh.EventPersisted
	EventAdopted              = refresh.EventAdopted
	EventRefreshTokenExpiring = refresh.EventRefreshTokenExpiring
	// EventTokenRejected: an API rejected a token issued moments before,
	// after an earlier rejection; Err matches ErrTokenRejected and names
	// the likely cause (an audience or resource mismatch).
	EventTokenRejected = refresh.EventTokenRejected
	// EventClockSkew: the server's Date header differs from the local clock
	// by more than 30 s; Skew says by how much (positive: server ahead).
	EventClockSkew EventKind = "clock_skew"
	EventLogin     EventKind = "login"
	EventLogout    EventKind = "logout"
)

// Event reports something the client did. It never carries a secret: no
// token, and Err's message is redacted.
type Event struct {
	Kind EventKind
	// Resource lists the resource indicators of the token concerned (empty
	// for the default token).
	Resource []string
	Time     time.Time
	// Duration of the operation, when it has one.
	Duration time.Duration
	// Expiry of the access token in use after the event, when known.
	Expiry time.Time
	// RefreshTokenExpiry, when known.
	RefreshTokenExpiry time.Time
	// Background is true when the refresh was started in the background
	// (early, before any caller needed it), not by a caller without a
	// usable token.
	Background bool
	// Waiters is how many token requests (API calls) waited for this
	// refresh; zero means none was held up.
	Waiters int
	// Skew is the server's clock minus ours, for EventClockSkew.
	Skew time.Duration
	// Err is the failure, if any.
	Err error
}

// LogValue implements slog.LogValuer.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", string(e.Kind))}
	if len(e.Resource) > 0 {
		attrs = append(attrs, slog.Any("resource", e.Resource))
	}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if !e.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expiry", e.Expiry))
	}
	if e.Waiters != 0 {
		attrs = append(attrs, slog.Int("waiters", e.Waiters))
	}
	if e.Skew != 0 {
		attrs = append(attrs, slog.Duration("skew", e.Skew))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// hub routes events to every open Client of a credential and keeps the
// Clients of one credential on one store. The token caches are shared by
// key in the process (refresh.New), so their events, and the grant's own,
// are for every Client of that key, not only the one that made the cache.
var hub = &eventHub{m: map[string]*hubEntry{}}

type eventHub struct {
	mu sync.Mutex
	m  map[string]*hubEntry // by the login's store key
}

type hubEntry struct {
	store   store.Store
	clients []*Client
}

// join registers c under key, and makes c use the store of the Clients
// already registered when c's is another handle on the same backend; it
// fails when another open Client of the same credential uses a different
// store (its tokens would be saved where c never looks).
func (h *eventHub) join(key string, c *Client) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[key]
	if e == nil {
		h.m[key] = &hubEntry{store: c.grant.store, clients: []*Client{c}}
		return nil
	}
	if !sameStore(e.store, c.grant.store) {
		return failure(opConfig, "another open Client for the same credential (issuer, client, scopes, resources, profile) uses a different store "+
			"(another backend, directory, lock directory or passphrase); share one store, or use another Profile", ErrInvalidConfig)
	}
	// Another handle on the same backend: use the first Client's, so that
	// the token caches this credential shares are given one Persister, not
	// two that would differ only by handle.
	c.grant.store = e.store
	e.clients = append(e.clients, c)
	return nil
}

// leave unregisters c (a no-op when it never joined).
func (h *eventHub) leave(key string, c *Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[key]
	if e == nil {
		return
	}
	e.clients = slices.DeleteFunc(e.clients, func(x *Client) bool { return x == c })
	if len(e.clients) == 0 {
		delete(h.m, key)
	}
}

// listeners returns the Clients registered under key.
func (h *eventHub) listeners(key string) []*Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[key]; e != nil {
		return slices.Clone(e.clients)
	}
	return nil
}

// sameStore reports whether a and b are one store: the same value, or two
// handles store.Open made for one persistent backend (store.SameBackend:
// the same directory or keychain, lock directory and, for encrypted files,
// passphrase). An equal Status is not enough: two handles on one directory
// with different passphrases, or different lock directories, have the
// same Status, and using the first one's handle for both would save the
// second Client's tokens under a passphrase it was not given, or let their
// refreshes miss each other's locks.
func sameStore(a, b store.Store) bool {
	return store.SameBackend(a, b)
}

// emit logs e and delivers it to the Events hook of every open Client of
// the grant's credential.
func (g *grant) emit(e Event) {
	g.log.Debug("client: event", "event", e)
	for _, c := range hub.listeners(g.baseKey().String()) {
		if c.cfg.Events != nil {
			c.cfg.Events(e)
		}
	}
}

// refreshEvent converts the token cache's events for the token of resources.
func (g *grant) refreshEvent(resources []string) func(refresh.Event) {
	return func(re refresh.Event) {
		g.emit(Event{Kind: re.Kind, Resource: resources, Time: re.Time, Duration: re.Duration, Expiry: re.Expiry,
			RefreshTokenExpiry: re.RefreshTokenExpiry, Background: re.Background, Waiters: re.Waiters, Err: re.Err})
	}
}
