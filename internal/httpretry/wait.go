package httpretry

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// nextWait returns the wait before the retry that follows attempt n (1 for
// the first) and the server's Retry-After hint, if resp carries one that
// applies (on a 429 or 503, the statuses it is defined for). ok is false
// when the hint asks for more than WaitMax: then no retry is made.
func (e *Engine) nextWait(n int, resp *http.Response, now time.Time) (wait, hint time.Duration, ok bool) {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if ra, has := ParseRetryAfter(resp.Header.Get("Retry-After"), now); has {
			if ra > e.WaitMax {
				return 0, ra, false
			}
			// At least what the server asked for, plus a little so that the
			// clients it turned away do not all come back at the same
			// instant, and never more than WaitMax.
			return min(ra+jitter(max(ra/10, e.WaitMin/2)), e.WaitMax), ra, true
		}
	}
	d := expStep(e.WaitMin, e.WaitMax, n-1)
	// Between half and all of the exponential step: never much shorter
	// than planned, and spread out.
	return d/2 + jitter(d-d/2), 0, true
}

// expStep is waitMin doubled n times, capped at waitMax (and never
// overflowing, however large n is).
func expStep(waitMin, waitMax time.Duration, n int) time.Duration {
	d := waitMin
	for i := 0; i < n && d < waitMax; i++ {
		d *= 2
	}
	return max(min(d, waitMax), 0)
}

// jitter returns a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
