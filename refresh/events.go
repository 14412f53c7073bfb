package refresh

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an [Event] reports. The client package reports the
// same kinds (client.EventKind is this type) and adds its own.
type EventKind string

// Event kinds.
const (
	// EventRefreshed: the Upstream issued a new token and it was published
	// (and saved, unless an EventPersistFailed follows).
	EventRefreshed EventKind = "refreshed"
	// EventRefreshFailed: a refresh failed; Err says why. The old token is
	// still served while it is valid, and the refresh is retried with backoff.
	EventRefreshFailed EventKind = "refresh_failed"
	// EventReauthRequired: the grant is dead (invalid_grant, ...); the stored
	// token was deleted and the user must log in again.
	EventReauthRequired EventKind = "reauth_required"
	// EventPersistFailed: a new token could not be saved (a reduced set
	// holding its refresh token may have been saved instead). Reported once
	// per token; the save is retried on the next access, in the background.
	EventPersistFailed EventKind = "persist_failed"
	// EventAdopted: another process had already refreshed; its stored token
	// was adopted without calling the Upstream.
	EventAdopted EventKind = "adopted"
	// EventRefreshTokenExpiring: the refresh token expires within
	// [Options.RefreshTokenLead] (RefreshTokenExpiry says when).
	EventRefreshTokenExpiring EventKind = "refresh_token_expiring"
	// EventPersisted: a token whose save had failed (EventPersistFailed)
	// was saved, in full, by a retry (or by Close's final attempt).
	EventPersisted EventKind = "persisted"
	// EventTokenRejected: a resource server rejected an access token that
	// was issued moments before, in answer to an earlier rejection; Err
	// matches [ErrTokenRejected] and names the likely cause. Refreshes
	// forced by rejections are rate-limited from then on ([Cache.Invalidate]).
	EventTokenRejected EventKind = "token_rejected"
)

// String returns the kind's name, such as "refreshed".
func (k EventKind) String() string { return string(k) }

// Event reports something the cache did. It carries no secret: no token,
// and Err's message is redacted.
type Event struct {
	Kind EventKind
	// Key is the cache's key.
	Key string
	// Time is when the event happened.
	Time time.Time
	// Duration is how long the refresh (or save) took, lock wait included.
	Duration time.Duration
	// Expiry is the expiry of the access token in use after the event (zero
	// when there is none).
	Expiry time.Time
	// RefreshTokenExpiry is the refresh token's expiry, when known.
	RefreshTokenExpiry time.Time
	// Background is true when the refresh was started in the background
	// (at the advisory point, or by the idle timer), not by a caller that
	// had no usable token.
	Background bool
	// Waiters is how many Token calls waited for this refresh: callers
	// that had no usable token (the first call, after Invalidate, inside
	// the mandatory window before expiry) and joined it. Zero means no
	// caller was held up. Set on EventRefreshed, EventRefreshFailed,
	// EventAdopted and EventReauthRequired of a refresh.
	Waiters int
	// Err is the failure, for EventRefreshFailed, EventReauthRequired,
	// EventPersistFailed and EventTokenRejected.
	Err error
}

// LogValue implements [slog.LogValuer].
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", e.Kind.String()), slog.String("key", e.Key)}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if !e.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expiry", e.Expiry))
	}
	if !e.RefreshTokenExpiry.IsZero() {
		attrs = append(attrs, slog.Time("refresh_token_expiry", e.RefreshTokenExpiry))
	}
	if e.Background {
		attrs = append(attrs, slog.Bool("background", true))
	}
	if e.Waiters != 0 {
		attrs = append(attrs, slog.Int("waiters", e.Waiters))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// emit logs e and passes it to the OnEvent hook.
func (c *core) emit(e Event) {
	e.Key = c.key
	level := slog.LevelInfo
	switch e.Kind {
	case EventRefreshed, EventAdopted:
		level = slog.LevelDebug
	case EventRefreshFailed, EventRefreshTokenExpiring, EventTokenRejected:
		level = slog.LevelWarn
	case EventReauthRequired, EventPersistFailed:
		level = slog.LevelError
	}
	c.o.Logger.LogAttrs(context.Background(), level, "refresh: "+e.Kind.String(), slog.Any("event", e))
	if c.o.OnEvent != nil {
		c.o.OnEvent(e)
	}
}
