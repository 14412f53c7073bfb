package client

import (
	"log/slog"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/refresh"
)

// EventKind says what an Event reports.
type EventKind string

// Event kinds. The refresh kinds mirror refresh.EventKind.
const (
	EventRefreshed      EventKind = "refreshed"
	EventRefreshFailed  EventKind = "refresh_failed"
	EventReauthRequired EventKind = "reauth_required"
	EventPersistFailed  EventKind = "persist_failed"
	// EventPersisted: a token whose save had failed is stored now.
	EventPersisted            EventKind = "persisted"
	EventAdopted              EventKind = "adopted"
	EventRefreshTokenExpiring EventKind = "refresh_token_expiring"
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
	// Background is true when no caller waited for the refresh.
	Background bool
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
	if e.Skew != 0 {
		attrs = append(attrs, slog.Duration("skew", e.Skew))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// emit delivers e to Config.Events and logs it at debug level.
func (c *Client) emit(e Event) {
	c.log.Debug("client: event", "event", e)
	if c.cfg.Events != nil {
		c.cfg.Events(e)
	}
}

// refreshEvent converts the token cache's events for the token of resources.
func (c *Client) refreshEvent(resources []string) func(refresh.Event) {
	return func(re refresh.Event) {
		var k EventKind
		switch re.Kind {
		case refresh.EventRefreshed:
			k = EventRefreshed
		case refresh.EventRefreshFailed:
			k = EventRefreshFailed
		case refresh.EventReauthRequired:
			k = EventReauthRequired
		case refresh.EventPersistFailed:
			k = EventPersistFailed
		case refresh.EventPersisted:
			k = EventPersisted
		case refresh.EventAdopted:
			k = EventAdopted
		case refresh.EventRefreshTokenExpiring:
			k = EventRefreshTokenExpiring
		default:
			k = EventKind(re.Kind.String())
		}
		c.emit(Event{Kind: k, Resource: resources, Time: re.Time, Duration: re.Duration, Expiry: re.Expiry,
			RefreshTokenExpiry: re.RefreshTokenExpiry, Background: re.Background, Err: re.Err})
	}
}

// errorFromResponse parses an endpoint's error answer.
func errorFromResponse(r *response) error {
	return oauthwire.ParseErrorResponse(r.status, r.header, r.body)
}
