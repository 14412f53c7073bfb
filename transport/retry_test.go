package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/transport"
)

// retryStack is transport (inner) under the retry client (outer) over an
// in-memory base, for synctest bubbles.
func retryStack(t *testing.T, src *fakeSource, base http.RoundTripper, opts transport.RetryOptions) *http.Client {
	t.Helper()
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Base = base
		tr.Origins = []string{"https://api.example.com"}
	})
	return transport.NewRetryClient(tr, retryOpts(opts))
}

// The token expires during the backoff between attempt 1 and attempt 2;
// attempt 2 carries the new token, because the retry loop is outside the
// transport and asks it for a token on every attempt.
func TestRetryTokenExpiresBetweenAttempts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{lifetime: 90 * time.Second}
		tok1 := src.current(t) // expires in 90 s
		time.Sleep(89 * time.Second)
		base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n == 0 {
				h := http.Header{"Retry-After": {"3"}}
				return respond(r, 503, h, "busy"), nil
			}
			return respond(r, 200, nil, "ok"), nil
		}}
		client := retryStack(t, src, base, transport.RetryOptions{WaitMax: 10 * time.Second})
		resp, err := client.Get("https://api.example.com/items")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		reqs := base.requests()
		if resp.StatusCode != 200 || len(reqs) != 2 {
			t.Fatalf("status %d after %d attempts", resp.StatusCode, len(reqs))
		}
		tok2 := src.current(t)
		if tok2 == tok1 {
			t.Fatal("test setup: token did not expire")
		}
		if reqs[0].Auth != "Bearer "+tok1.AccessToken || reqs[1].Auth != "Bearer "+tok2.AccessToken {
			t.Errorf("attempt 2 carried %q, want the new token", reqs[1].Auth)
		}
	})
}

// Only idempotent or marked requests are retried, and only when their body
// can be replayed: an API call is never sent twice unless that is safe.
func TestRetryOnlyIdempotent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		method    string
		mark      bool
		header    string
		body      string
		getBody   bool
		length    int64 // ContentLength override; 0 keeps len(body)
		wantTries int
	}{
		{"GET", "GET", false, "", "", false, 0, 3},
		{"HEAD", "HEAD", false, "", "", false, 0, 3},
		{"PUT with replayable body", "PUT", false, "", "doc", true, 0, 3},
		{"DELETE", "DELETE", false, "", "", false, 0, 3},
		{"POST", "POST", false, "", "form", true, 0, 1},
		{"PATCH", "PATCH", false, "", "patch", true, 0, 1},
		{"POST marked idempotent", "POST", true, "", "form", true, 0, 3},
		{"POST with Idempotency-Key", "POST", false, "Idempotency-Key", "form", true, 0, 3},
		{"POST with X-Idempotency-Key", "POST", false, "X-Idempotency-Key", "form", true, 0, 3},
		{"POST marked but body not replayable", "POST", true, "", "form", false, 0, 1},
		{"PUT body without GetBody", "PUT", false, "", "doc", false, 0, 1},
		{"PUT body of unknown length", "PUT", false, "", "doc", true, -1, 1},
		{"PUT body over the replay limit", "PUT", false, "", strings.Repeat("x", 2<<10), true, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
					if n < 2 {
						return respond(r, 503, nil, ""), nil
					}
					return respond(r, 200, nil, ""), nil
				}}
				client := retryStack(t, newFakeSource(), base, transport.RetryOptions{MaxReplayBody: 1 << 10})
				var copies []*readCloseCounter
				req, _ := bodyRequest(t, tt.method, "https://api.example.com/r", tt.body, tt.getBody, &copies)
				if tt.body == "" {
					req.Body, req.ContentLength = nil, 0
				}
				if tt.length != 0 {
					req.ContentLength = tt.length
				}
				if tt.mark {
					req = req.WithContext(transport.WithIdempotent(req.Context()))
				}
				if tt.header != "" {
					req.Header.Set(tt.header, "key-1")
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				reqs := base.requests()
				if len(reqs) != tt.wantTries {
					t.Fatalf("%d attempts, want %d", len(reqs), tt.wantTries)
				}
				for i, r := range reqs {
					if r.Body != tt.body && tt.method != "HEAD" {
						t.Errorf("attempt %d body %q, want %q", i, r.Body, tt.body)
					}
				}
				if wantStatus := map[bool]int{true: 200, false: 503}[tt.wantTries == 3]; resp.StatusCode != wantStatus {
					t.Errorf("status %d, want %d", resp.StatusCode, wantStatus)
				}
			})
		})
	}
}

// A 100 MB streaming body is sent once and never buffered, even when the
// request is marked idempotent and the server answers 503: replaying it
// would mean holding all of it in memory.
func TestRetryStreamingBodySentOnceNotBuffered(t *testing.T) {
	const size = 100 << 20
	var received atomic.Int64
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		received.Add(n)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	src := newFakeSource()
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Origins = []string{srv.URL}
		tr.AllowInsecureLoopback = true
		tr.Base = srv.Client().Transport
	})
	client := transport.NewRetryClient(tr, retryOpts(transport.RetryOptions{WaitMin: time.Millisecond, WaitMax: time.Millisecond}))
	for _, withGetBody := range []bool{false, true} {
		received.Store(0)
		hits.Store(0)
		body := &readCloseCounter{r: io.LimitReader(zeros{}, size)}
		req, _ := http.NewRequestWithContext(transport.WithIdempotent(context.Background()), "POST", srv.URL+"/upload", body)
		req.ContentLength = size
		getBodyCalls := 0
		if withGetBody { // replayable in principle, but over the 1 MiB limit
			req.GetBody = func() (io.ReadCloser, error) {
				getBodyCalls++
				return io.NopCloser(io.LimitReader(zeros{}, size)), nil
			}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp, err := client.Do(req)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || hits.Load() != 1 || received.Load() != size {
			t.Fatalf("GetBody %v: status %d, %d attempts, %d bytes; want 503, 1, %d", withGetBody, resp.StatusCode, hits.Load(), received.Load(), size)
		}
		if getBodyCalls != 0 || body.closes.Load() != 1 {
			t.Errorf("GetBody %v: GetBody called %d times, body closed %d times", withGetBody, getBodyCalls, body.closes.Load())
		}
		// Buffering would allocate at least the 100 MB body.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("GetBody %v: %d MiB allocated while sending, want far less than the body", withGetBody, alloc>>20)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Retry-After is honoured up to WaitMax; beyond it the response goes
// straight back to the caller, who can read the header. Waits never exceed
// WaitMax.
func TestRetryAfterCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter string
		wantTries  int
		minWait    time.Duration
		maxWait    time.Duration
	}{
		{"seconds within the cap", "3", 2, 3 * time.Second, 3300 * time.Millisecond},
		{"one day: not retried", "86400", 1, 0, 0},
		{"just over the cap: not retried", "6", 1, 0, 0},
		{"HTTP date within the cap", "", 2, 4 * time.Second, 5 * time.Second}, // set below: now+4s
		{"garbage: exponential backoff", "soon", 2, 250 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var times []time.Time
				base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
					times = append(times, time.Now())
					if n == 0 {
						ra := tt.retryAfter
						if ra == "" {
							ra = time.Now().Add(4 * time.Second).UTC().Format(http.TimeFormat)
						}
						return respond(r, 429, http.Header{"Retry-After": {ra}}, "slow down"), nil
					}
					return respond(r, 200, nil, ""), nil
				}}
				client := retryStack(t, newFakeSource(), base, transport.RetryOptions{WaitMin: 500 * time.Millisecond, WaitMax: 5 * time.Second})
				start := time.Now()
				resp, err := client.Get("https://api.example.com/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if len(times) != tt.wantTries {
					t.Fatalf("%d attempts, want %d", len(times), tt.wantTries)
				}
				if tt.wantTries == 1 {
					if resp.StatusCode != 429 || string(b) != "slow down" || resp.Header.Get("Retry-After") != tt.retryAfter {
						t.Errorf("caller got %d %q, want the 429 with its body and Retry-After", resp.StatusCode, b)
					}
					if d := time.Since(start); d != 0 {
						t.Errorf("returned after %v, want at once", d)
					}
					return
				}
				if wait := times[1].Sub(times[0]); wait < tt.minWait || wait > tt.maxWait {
					t.Errorf("waited %v, want [%v, %v]", wait, tt.minWait, tt.maxWait)
				}
			})
		})
	}
}

// Retries stop at MaxRetries or at the budget, whichever comes first, and
// the last response reaches the caller with its body.
func TestRetryBudgetAndPassThrough(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       transport.RetryOptions
		wantTries  int
		maxElapsed time.Duration
	}{
		{"max retries", transport.RetryOptions{MaxRetries: 2, WaitMin: time.Second, WaitMax: time.Second}, 3, 2 * time.Second},
		{"budget", transport.RetryOptions{MaxRetries: 100, WaitMin: 2 * time.Second, WaitMax: 2 * time.Second, Budget: 7 * time.Second}, 0, 7 * time.Second},
		{"no retries", transport.RetryOptions{MaxRetries: -1}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
					return respond(r, 502, nil, "bad gateway #"+string(rune('0'+n%10))), nil
				}}
				client := retryStack(t, newFakeSource(), base, tt.opts)
				start := time.Now()
				resp, err := client.Get("https://api.example.com/")
				if err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(start)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				tries := len(base.requests())
				if tt.wantTries != 0 && tries != tt.wantTries {
					t.Errorf("%d attempts, want %d", tries, tt.wantTries)
				}
				if tt.wantTries == 0 && tries < 4 { // waits of 1-2 s within 7 s
					t.Errorf("only %d attempts within the budget", tries)
				}
				if elapsed > tt.maxElapsed {
					t.Errorf("took %v, want at most %v", elapsed, tt.maxElapsed)
				}
				if want := "bad gateway #" + string(rune('0'+(tries-1)%10)); resp.StatusCode != 502 || string(b) != want {
					t.Errorf("caller got %d %q, want the last response %q", resp.StatusCode, b, want)
				}
			})
		})
	}
}

// The caller's context ends during a backoff: the call returns at once
// with the context's error.
func TestRetryContextEndsDuringBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		base := &memBase{answer: func(_ int, r *http.Request) (*http.Response, error) {
			return respond(r, 503, http.Header{"Retry-After": {"8"}}, ""), nil
		}}
		client := retryStack(t, newFakeSource(), base, transport.RetryOptions{WaitMax: 10 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.example.com/", nil)
		start := time.Now()
		resp, err := client.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) || resp != nil {
			t.Fatalf("Do = %v, %v; want DeadlineExceeded", resp, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("returned after %v, want 1s", d)
		}
		if n := len(base.requests()); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

// AttemptTimeout is the inner client's timeout: a hung attempt is cut off
// and retried.
func TestRetryAttemptTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int32
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if attempts.Add(1) == 1 {
				<-r.Context().Done() // hangs until the attempt's deadline
				return nil, r.Context().Err()
			}
			return respond(r, 200, nil, ""), nil
		})
		client := retryStack(t, newFakeSource(), base, transport.RetryOptions{AttemptTimeout: 2 * time.Second, WaitMin: time.Second, WaitMax: time.Second})
		start := time.Now()
		resp, err := client.Get("https://api.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || attempts.Load() != 2 {
			t.Fatalf("status %d after %d attempts", resp.StatusCode, attempts.Load())
		}
		if d := time.Since(start); d < 2500*time.Millisecond || d > 3*time.Second {
			t.Errorf("took %v, want the 2 s timeout plus a 0.5-1 s wait", d)
		}
	})
}

// Network errors are retried; errors of the transport itself (a refused
// origin, a failing token source) are not; the final error reaches the
// caller unwrapped once.
func TestRetryErrors(t *testing.T) {
	t.Parallel()
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name      string
		url       string
		srcErr    error
		baseErr   error
		wantErr   error
		wantTries int // requests reaching the base
	}{
		{"connection refused", "https://api.example.com/", nil, netErr, syscall.ECONNREFUSED, 4},
		{"unexpected EOF", "https://api.example.com/", nil, io.ErrUnexpectedEOF, io.ErrUnexpectedEOF, 4},
		{"token source failure", "https://api.example.com/", errors.New("reauth required"), nil, nil, 0},
		{"refused origin", "https://other.example.com/", nil, nil, transport.ErrOriginNotAllowed, 0},
		{"plain error from base", "https://api.example.com/", nil, errors.New("proxy said no"), nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				src.err = tt.srcErr
				base := &memBase{answer: func(int, *http.Request) (*http.Response, error) { return nil, tt.baseErr }}
				tr := mustNew(t, src, func(tr *transport.Options) {
					tr.Base = base
					tr.Origins = []string{"https://api.example.com"}
					tr.RejectOtherOrigins = true
				})
				client := transport.NewRetryClient(tr, retryOpts(transport.RetryOptions{}))
				resp, err := client.Get(tt.url)
				if err == nil || resp != nil {
					t.Fatalf("Get = %v, %v; want an error", resp, err)
				}
				want := []error{tt.wantErr, tt.srcErr, tt.baseErr}
				if !errorsIsAny(err, want...) {
					t.Errorf("err = %v, want it to wrap one of %v", err, want)
				}
				if n := len(base.requests()); n != tt.wantTries {
					t.Errorf("%d attempts reached the base, want %d", n, tt.wantTries)
				}
				if _, calls, _, _ := src.stats(); tt.srcErr != nil && calls != 1 {
					t.Errorf("token source asked %d times, want 1", calls)
				}
			})
		})
	}
}

// The retry client does not modify the caller's request either.
func TestRetryClientDoesNotMutateRequest(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n == 0 {
				return respond(r, 503, nil, ""), nil
			}
			return respond(r, 200, nil, ""), nil
		}}
		client := retryStack(t, newFakeSource(), base, transport.RetryOptions{})
		req, _ := http.NewRequest("PUT", "https://api.example.com/doc", strings.NewReader("v1"))
		req.Header.Set("X-Trace", "1")
		before := req.Header.Clone()
		getBody, body, length := req.GetBody, req.Body, req.ContentLength
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(req.Header) != len(before) || req.Header.Get("X-Trace") != "1" || req.Header.Get("Authorization") != "" {
			t.Errorf("caller's header changed: %v", req.Header)
		}
		if req.Body != body || req.ContentLength != length || (req.GetBody == nil) != (getBody == nil) {
			t.Error("caller's body fields changed")
		}
	})
}
