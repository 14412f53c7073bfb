package httpretry

import (
	"net/http"
	"strings"
	"time"
)

// MaxRetryAfter is the largest Retry-After ParseRetryAfter reports; larger
// values are clamped to it. Callers cap far lower anyway: a server that asks
// for a long wait gets its answer handed back, not waited for.
const MaxRetryAfter = 365 * 24 * time.Hour

// ParseRetryAfter parses a Retry-After header value (RFC 9110 section
// 10.2.3): delay-seconds (digits only) or an HTTP-date, which is turned into
// a delay relative to now (0 when the date is in the past). ok is false for
// an empty or invalid value. The result is clamped to [0, MaxRetryAfter];
// callers apply their own, much smaller cap.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, false
	}
	if isDigits(v) {
		const maxSecs = int64(MaxRetryAfter / time.Second)
		var n int64
		for i := 0; i < len(v); i++ {
			n = n*10 + int64(v[i]-'0')
			if n > maxSecs {
				return MaxRetryAfter, true
			}
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		d = 0
	case d > MaxRetryAfter:
		d = MaxRetryAfter
	}
	return d, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
