package httpretry

import (
	"net/http"
	"testing"
	"time"
)

// The exponential step doubles from WaitMin up to WaitMax and never
// overflows; the wait is between half and all of it.
func TestNextWaitExponential(t *testing.T) {
	t.Parallel()
	e := &Engine{WaitMin: 100 * time.Millisecond, WaitMax: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, ms := range steps {
		n := i + 1
		step := ms * time.Millisecond
		if got := expStep(e.WaitMin, e.WaitMax, n-1); got != step {
			t.Errorf("step after attempt %d = %v, want %v", n, got, step)
		}
		for range 200 {
			w, hint, ok := e.nextWait(n, &http.Response{StatusCode: 503, Header: http.Header{}}, time.Now())
			if !ok || hint != 0 || w < step/2 || w > step {
				t.Fatalf("wait after attempt %d = %v, %v, %v; want [%v, %v]", n, w, hint, ok, step/2, step)
			}
		}
	}
	for _, n := range []int{63, 64, 1 << 20} {
		if got := expStep(time.Hour, 24*time.Hour, n); got != 24*time.Hour {
			t.Errorf("expStep(1h, 24h, %d) = %v, want the cap", n, got)
		}
	}
	if got := expStep(0, time.Second, 5); got != 0 {
		t.Errorf("expStep(0, 1s, 5) = %v, want 0", got)
	}
}

// A Retry-After is waited in full plus a little, never beyond WaitMax; over
// WaitMax it stops the retries; it counts on 429 and 503 only.
func TestNextWaitRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &Engine{WaitMin: 200 * time.Millisecond, WaitMax: 5 * time.Second}
	tests := []struct {
		status   int
		ra       string
		min, max time.Duration
		hint     time.Duration
		ok       bool
	}{
		{429, "2", 2 * time.Second, 2200 * time.Millisecond, 2 * time.Second, true},
		{503, "0", 0, 100 * time.Millisecond, 0, true},
		{503, "5", 5 * time.Second, 5 * time.Second, 5 * time.Second, true}, // at the cap: no room for jitter
		{503, now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, 3300 * time.Millisecond, 3 * time.Second, true},
		{429, "6", 0, 0, 6 * time.Second, false},
		{503, "86400", 0, 0, 24 * time.Hour, false},
		{500, "2", 100 * time.Millisecond, 200 * time.Millisecond, 0, true}, // ignored: exponential
		{429, "later", 100 * time.Millisecond, 200 * time.Millisecond, 0, true},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.ra}}}
		for range 200 {
			w, hint, ok := e.nextWait(1, resp, now)
			if ok != tt.ok || hint != tt.hint || w < tt.min || w > tt.max {
				t.Fatalf("%d Retry-After %q: %v, %v, %v; want [%v, %v], %v, %v", tt.status, tt.ra, w, hint, ok, tt.min, tt.max, tt.hint, tt.ok)
			}
		}
	}
}
