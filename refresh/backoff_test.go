package refresh

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// The backoff after failed refreshes, and the server's Retry-After.

// hintedErr is an Upstream failure that carries the delay the server asked
// for, the way the client package's *RateLimitError does.
type hintedErr struct{ after time.Duration }

func (e *hintedErr) Error() string                 { return fmt.Sprintf("HTTP 429: retry after %s", e.after) }
func (e *hintedErr) RetryAfterHint() time.Duration { return e.after }
func (e *hintedErr) Is(target error) bool          { return target == ErrTemporarilyUnavailable }

var _ retryAfterHinter = (*hintedErr)(nil)

// attemptGaps runs, inside a synctest bubble, a cache whose stored token
// expires in one hour and whose server fails the first fails refreshes
// with failure(n). The schedule has no randomness: the backoff after n
// failures is exactly 3/4 of RetryBackoffMin·2^(n-1), and the background
// refresh starts at 48 min. A caller asks for a token every second until
// 59 min; every call must get a token at once (the old one until the
// refresh succeeds). It returns the gaps between consecutive token
// requests.
func attemptGaps(t *testing.T, fails int, failure func(n int) error, opts func(*Options)) []time.Duration {
	t.Helper()
	var attempts []time.Time
	f := scene{first: time.Hour, server: func(as *rotatingAS) {
		as.fail = func(n int) error {
			attempts = append(attempts, time.Now())
			if n <= fails {
				return failure(n)
			}
			return nil
		}
	}, options: func(o *Options) {
		o.rand = func() float64 { return 0.5 }
		o.MaxAdvisoryMargin = 20 * time.Minute
		if opts != nil {
			opts(o)
		}
	}}.start(t)
	c := f.c
	if _, err := c.Token(t.Context()); err != nil { // loads the stored token
		t.Fatal(err)
	}
	waits := c.c.waits.Load()
	var last string
	for end := time.Now().Add(59 * time.Minute); time.Now().Before(end); time.Sleep(time.Second) {
		tok, err := c.Token(t.Context())
		if err != nil {
			t.Fatalf("Token at %v failed while the old token was valid: %v", time.Until(end), err)
		}
		last = tok.AccessToken
	}
	if w := c.c.waits.Load(); w != waits {
		t.Fatalf("%d callers waited for a refresh while a valid token was at hand", w-waits)
	}
	if last != "at-1" {
		t.Fatalf("token after recovery = %q, want at-1", last)
	}
	f.as.mu.Lock()
	defer f.as.mu.Unlock()
	if len(attempts) != fails+1 {
		t.Fatalf("token requests = %d, want %d (%d failures, then success)", len(attempts), fails+1, fails)
	}
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, attempts[i].Sub(attempts[i-1]))
	}
	return gaps
}

// oldBackoff is the jittered backoff after n failures with the jitter
// fixed at its middle (the random factor 0.5): 3/4 of min·2^(n-1), capped.
func oldBackoff(min, max time.Duration, n int) time.Duration {
	d := min << (n - 1)
	if d > max {
		d = max
	}
	return d/2 + d/4
}

// With a Retry-After of 120 s, no token request goes out for 120 s after
// a failure, then exactly one; the old token is served meanwhile.
func TestRetryAfterDelaysNextRefresh(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		gaps := attemptGaps(t, 2, func(int) error {
			return fmt.Errorf("grant: %w", &hintedErr{after: 120 * time.Second})
		}, nil)
		for i, g := range gaps {
			if g != 120*time.Second {
				t.Fatalf("gap before attempt %d = %v, want exactly 120s (the server's Retry-After)", i+2, g)
			}
		}
	})
}

// A hostile Retry-After (10 000 000 s, almost four months) is capped:
// at 5 min by default, at Options.MaxRetryAfter when set.
func TestRetryAfterCappedByMaxRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  time.Duration // Options.MaxRetryAfter
		want time.Duration
	}{
		{"default", 0, DefaultMaxRetryAfter},
		{"90s", 90 * time.Second, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				gaps := attemptGaps(t, 2, func(int) error { return &hintedErr{after: 10_000_000 * time.Second} },
					func(o *Options) { o.MaxRetryAfter = tc.set })
				for i, g := range gaps {
					if g != tc.want {
						t.Fatalf("gap before attempt %d = %v, want the cap, %v", i+2, g, tc.want)
					}
				}
			})
		})
	}
}

// The backoff wins when it is longer than the server's delay, and a
// negative MaxRetryAfter ignores the delay.
func TestRetryAfterShorterThanBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Backoffs 3 s, 6 s, 12 s; the server asks for 5 s each time.
		gaps := attemptGaps(t, 3, func(int) error { return &hintedErr{after: 5 * time.Second} },
			func(o *Options) { o.RetryBackoffMin = 4 * time.Second })
		for i, want := range []time.Duration{5 * time.Second, 6 * time.Second, 12 * time.Second} {
			if gaps[i] != want {
				t.Fatalf("gaps = %v, want [5s 6s 12s]: the longer of the backoff and the server's delay", gaps)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		gaps := attemptGaps(t, 2, func(int) error { return &hintedErr{after: time.Minute} },
			func(o *Options) { o.MaxRetryAfter = -1 })
		for i, g := range gaps {
			if want := oldBackoff(DefaultRetryBackoffMin, DefaultRetryBackoffMax, i+1); g != want {
				t.Fatalf("with MaxRetryAfter < 0: gap before attempt %d = %v, want the backoff %v", i+2, g, want)
			}
		}
	})
}

// Without a Retry-After the backoff is the jittered exponential one, as
// before.
func TestBackoffWithoutRetryAfterUnchanged(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		gaps := attemptGaps(t, 4, func(int) error { return retrieveErr(503, "", "down") }, nil)
		for i, g := range gaps {
			if want := oldBackoff(DefaultRetryBackoffMin, DefaultRetryBackoffMax, i+1); g != want {
				t.Fatalf("gap before attempt %d = %v, want %v (the jittered backoff)", i+2, g, want)
			}
		}
	})
}

// Once the token has expired, a caller that must wait gets the error at
// once during the server's Retry-After, as during any backoff: it does not
// block for the delay, and no token request goes out before it ends.
func TestRetryAfterExpiredTokenFailsFast(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{server: func(as *rotatingAS) { // the stored token expires now
			as.fail = func(n int) error {
				if n == 1 {
					return &hintedErr{after: 120 * time.Second}
				}
				return nil
			}
		}}.start(t)
		c := f.c
		_, err := c.Token(t.Context()) // waits for one attempt
		var h retryAfterHinter
		if !errors.Is(err, ErrTemporarilyUnavailable) || !errors.As(err, &h) || h.RetryAfterHint() != 120*time.Second {
			t.Fatalf("Token = %v, want ErrTemporarilyUnavailable carrying the server's hint", err)
		}
		t0 := time.Now()
		for time.Since(t0) < 120*time.Second {
			before := time.Now()
			if tok, err := c.Token(t.Context()); err == nil || !errors.As(err, &h) {
				t.Fatalf("Token %v after the failure = %v, %v; want the last error", time.Since(t0), tok, err)
			}
			if time.Since(before) != 0 {
				t.Fatalf("Token blocked for %v during the server's delay; want the error at once", time.Since(before))
			}
			if calls, _, _ := f.as.stats(); calls != 1 {
				t.Fatalf("token requests %v after the failure = %d, want 1 (the server asked to wait 120s)", time.Since(t0), calls)
			}
			time.Sleep(time.Second)
		}
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token after the delay = %v, %v; want at-1", tok, err)
		}
		if calls, _, _ := f.as.stats(); calls != 2 {
			t.Fatalf("token requests = %d, want 2", calls)
		}
	})
}
