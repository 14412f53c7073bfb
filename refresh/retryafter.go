package refresh

import (
	"errors"
	"time"
)

// retryAfterHinter is how an Upstream's error says how long the
// authorization server asked the client to wait before its next request,
// such as the HTTP Retry-After of a 429 or 503 answer: a method
// RetryAfterHint() time.Duration anywhere in the chain errors.As walks
// (see [Upstream]). The client package's *client.RateLimitError and
// *client.EndpointError have it. It is unexported, like oauthError, so
// that a grant needs no import of this package to report a delay.
type retryAfterHinter interface {
	RetryAfterHint() time.Duration
}

// retryAfter returns the delay err asks for before the next refresh: the
// hint of the first error in its chain that carries one, at most limit.
// It returns zero when there is none or limit is zero (hints ignored).
func retryAfter(err error, limit time.Duration) time.Duration {
	var h retryAfterHinter
	if err == nil || limit <= 0 || !errors.As(err, &h) {
		return 0
	}
	return min(max(h.RetryAfterHint(), 0), limit)
}
