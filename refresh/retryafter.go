package refresh

import (
	"errors"
	"time"
)

// RetryAfterHinter is implemented by an error that carries how long the
// authorization server asked the client to wait before its next request,
// such as the HTTP Retry-After of a 429 or 503 answer (the client
// package's *client.RateLimitError and *client.EndpointError report it
// this way). An
// [Upstream] reports a server's request to wait by returning such an
// error, anywhere in the chain errors.As walks (wrapped with %w, joined,
// or the cause of an [*Error]).
//
// After a failed refresh whose error carries a positive hint, the next
// attempt, in the background or by a caller, is made no earlier than the
// hint, capped at [Options.MaxRetryAfter]; the jittered backoff applies
// when it is longer. Meanwhile a still-valid token keeps being served,
// and a caller that has no valid token gets the refresh's error at once
// rather than being held for the delay (see the package comment,
// "Failures").
type RetryAfterHinter interface {
	// RetryAfterHint returns the delay the server asked for; zero or
	// negative means none.
	RetryAfterHint() time.Duration
}

// retryAfter returns the delay err asks for before the next refresh: the
// hint of the first error in its chain that carries one, at most limit.
// It returns zero when there is none or limit is zero (hints ignored).
func retryAfter(err error, limit time.Duration) time.Duration {
	var h RetryAfterHinter
	if err == nil || limit <= 0 || !errors.As(err, &h) {
		return 0
	}
	return min(max(h.RetryAfterHint(), 0), limit)
}
