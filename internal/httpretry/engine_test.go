package httpretry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// Retries go on while the policy allows, up to MaxRetries, and the last
// response comes back as it is, body and all.
func TestEngineRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		failures   int // 502s before a 200
		maxRetries int
		policy     Policy
		wantTries  int
		wantStatus int
	}{
		{"success after two failures", 2, 3, statusPolicy, 3, 200},
		{"retries exhausted", 10, 2, statusPolicy, 3, 502},
		{"no retries", 10, 0, statusPolicy, 1, 502},
		{"nil policy", 10, 3, nil, 1, 502},
		{"policy refuses", 10, 3, func(Attempt) bool { return false }, 1, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rt := &fakeRT{answer: func(n int, r *http.Request) (*http.Response, error) {
					if n < tt.failures {
						return respond(r, 502, nil, "bad gateway #"+strconv.Itoa(n+1)), nil
					}
					return respond(r, 200, nil, "ok"), nil
				}}
				e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: tt.maxRetries, WaitMin: time.Second, WaitMax: time.Second, Budget: time.Minute}
				var seen []int
				policy := tt.policy
				if policy != nil {
					policy = func(at Attempt) bool { seen = append(seen, at.N); return tt.policy(at) }
				}
				res, err := e.Do(newRequest(t, t.Context(), "GET"), nil, policy)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, res.Response)
				if res.Attempts != tt.wantTries || len(rt.attempts()) != tt.wantTries {
					t.Fatalf("Attempts %d, %d sent; want %d", res.Attempts, len(rt.attempts()), tt.wantTries)
				}
				want := "ok"
				if tt.wantStatus != 200 {
					want = "bad gateway #" + strconv.Itoa(tt.wantTries)
				}
				if res.Response.StatusCode != tt.wantStatus || body != want {
					t.Errorf("got %d %q, want %d %q", res.Response.StatusCode, body, tt.wantStatus, want)
				}
				for i, n := range seen {
					if n != i+1 {
						t.Errorf("the policy saw attempt numbers %v, want 1, 2, ...", seen)
						break
					}
				}
				if res.RetryAfter != 0 {
					t.Errorf("RetryAfter = %v, want 0", res.RetryAfter)
				}
				// Every response but the returned one was drained and closed.
				if n := rt.closes.Load(); n != int32(tt.wantTries) {
					t.Errorf("%d response bodies closed, want %d", n, tt.wantTries)
				}
			})
		})
	}
}

// Retries stop when the next wait would end after the budget; every wait
// is within [WaitMin/2, WaitMax].
func TestEngineBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		rt := &fakeRT{answer: func(_ int, r *http.Request) (*http.Response, error) {
			times = append(times, time.Now())
			return respond(r, 503, nil, ""), nil
		}}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 100, WaitMin: 2 * time.Second, WaitMax: 2 * time.Second, Budget: 7 * time.Second}
		start := time.Now()
		res, err := e.Do(newRequest(t, t.Context(), "GET"), nil, statusPolicy)
		if err != nil {
			t.Fatal(err)
		}
		res.Response.Body.Close()
		if d := time.Since(start); d > e.Budget {
			t.Errorf("took %v, budget %v", d, e.Budget)
		}
		if len(times) < 4 { // waits of 1 to 2 s within 7 s
			t.Errorf("only %d attempts within the budget", len(times))
		}
		for i := 1; i < len(times); i++ {
			if w := times[i].Sub(times[i-1]); w < time.Second || w > 2*time.Second {
				t.Errorf("wait %d: %v, want [1s, 2s]", i, w)
			}
		}
	})
}

// A Retry-After up to WaitMax is waited (never less); one over WaitMax, or
// over what the budget leaves, ends the retries at once and is reported,
// with the server's answer returned as it is. A Retry-After on a status it
// is not defined for is ignored. (The wait formula itself is tested on
// nextWait.)
func TestEngineRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		header  string // "date+4s": an HTTP date 4 s ahead
		budget  time.Duration
		atLeast time.Duration // the shortest acceptable wait; -1: no retry
		report  time.Duration // the Result's RetryAfter
	}{
		{"seconds within the cap", 429, "3", time.Minute, 3 * time.Second, 0},
		{"HTTP date within the cap", 503, "date+4s", time.Minute, 4 * time.Second, 0},
		{"just over the cap", 429, "6", time.Minute, -1, 6 * time.Second},
		{"one day", 503, "86400", time.Minute, -1, 24 * time.Hour},
		{"over what the budget leaves", 503, "4", 3 * time.Second, -1, 4 * time.Second},
		{"ignored on a 500", 500, "86400", time.Minute, 250 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				res, body, waited := retryAfterOnce(t, tt.status, tt.header, tt.budget)
				if res.RetryAfter != tt.report {
					t.Errorf("RetryAfter = %v, want %v", res.RetryAfter, tt.report)
				}
				switch {
				case tt.atLeast < 0 && (res.Attempts != 1 || waited != 0 || res.Response.StatusCode != tt.status || body != "come back later"):
					t.Errorf("%d attempt(s), %d %q after %v; want the server's answer at once", res.Attempts, res.Response.StatusCode, body, waited)
				case tt.atLeast >= 0 && (res.Attempts != 2 || waited < tt.atLeast || waited > 5*time.Second):
					t.Errorf("%d attempt(s), waited %v; want 2 and a wait in [%v, WaitMax]", res.Attempts, waited, tt.atLeast)
				}
			})
		})
	}
}

// retryAfterOnce runs one call whose first answer is status with
// Retry-After: header, and whose second is a 200. It returns the result,
// the returned body, and the time until the second attempt (or until the
// call returned, when there was none).
func retryAfterOnce(t *testing.T, status int, header string, budget time.Duration) (Result, string, time.Duration) {
	t.Helper()
	start := time.Now()
	var second time.Time
	rt := &fakeRT{answer: func(n int, r *http.Request) (*http.Response, error) {
		if n > 0 {
			second = time.Now()
			return respond(r, 200, nil, ""), nil
		}
		if header == "date+4s" {
			header = time.Now().Add(4 * time.Second).UTC().Format(http.TimeFormat)
		}
		return respond(r, status, http.Header{"Retry-After": {header}}, "come back later"), nil
	}}
	e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: 500 * time.Millisecond, WaitMax: 5 * time.Second, Budget: budget}
	res, err := e.Do(newRequest(t, t.Context(), "GET"), nil, statusPolicy)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res.Response)
	if second.IsZero() {
		return res, body, time.Since(start)
	}
	return res, body, second.Sub(start)
}

// The body is built once per attempt, never reused, and each attempt's
// ContentLength is its own body's; the template request is not modified.
func TestEngineBodyRebuiltPerAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{answer: failThenOK(2, 503)}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: time.Second, WaitMax: time.Second, Budget: time.Minute}
		builds := 0
		body := func() (io.Reader, error) {
			builds++
			// A different assertion, of a different length, every time.
			return strings.NewReader("assertion=" + strings.Repeat(strconv.Itoa(builds), builds)), nil
		}
		req := newRequest(t, t.Context(), "POST")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		callerBody := io.NopCloser(strings.NewReader("never sent"))
		req.Body, req.ContentLength = callerBody, 99
		before := req.Header.Clone()
		ctx := req.Context()
		res, err := e.Do(req, body, statusPolicy)
		if err != nil {
			t.Fatal(err)
		}
		res.Response.Body.Close()
		sent := rt.attempts()
		if builds != 3 || len(sent) != 3 {
			t.Fatalf("%d bodies built for %d attempts, want 3 and 3", builds, len(sent))
		}
		for i, a := range sent {
			want := "assertion=" + strings.Repeat(strconv.Itoa(i+1), i+1)
			if a.body != want || a.length != int64(len(want)) {
				t.Errorf("attempt %d sent %q (ContentLength %d), want %q (%d)", i+1, a.body, a.length, want, len(want))
			}
			if a.header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				t.Errorf("attempt %d lost the header", i+1)
			}
		}
		if req.Body != callerBody || req.ContentLength != 99 || req.GetBody != nil || req.Context() != ctx || len(req.Header) != len(before) {
			t.Error("the template request was modified")
		}
	})
}

// A body that cannot be built ends the call with its error, and no
// response is returned beside it.
func TestEngineBodyError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{answer: func(_ int, r *http.Request) (*http.Response, error) { return respond(r, 503, nil, ""), nil }}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: time.Second, WaitMax: time.Second, Budget: time.Minute}
		errSign := errors.New("cannot sign")
		builds := 0
		res, err := e.Do(newRequest(t, t.Context(), "POST"), func() (io.Reader, error) {
			if builds++; builds > 1 {
				return nil, errSign
			}
			return strings.NewReader("x"), nil
		}, statusPolicy)
		if !errors.Is(err, errSign) || res.Response != nil {
			t.Fatalf("Do = %v, %v; want the body's error alone", res.Response, err)
		}
		if res.Attempts != 1 || rt.closes.Load() < 1 {
			t.Errorf("Attempts %d, %d bodies closed; want 1 attempt, its response closed", res.Attempts, rt.closes.Load())
		}
	})
}

// The policy sees whether the transport reported a connection for the
// attempt, so a single-use request is repeated only when none of it can
// have left the machine; and never once the server answered.
func TestEngineNeverReplayPolicy(t *testing.T) {
	t.Parallel()
	neverReplay := func(at Attempt) bool { return at.Err != nil && !at.Connected && NotSent(at.Err) }
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name      string
		connect   bool // the transport reports GotConn before failing
		err       error
		status    int
		wantTries int
	}{
		{"dial error, no connection", false, dialErr, 0, 4},
		{"dial error after a connection", true, dialErr, 0, 1},
		{"reset, no connection reported", false, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, 0, 1},
		{"a 503 answer", true, nil, 503, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rt := &fakeRT{answer: func(_ int, r *http.Request) (*http.Response, error) {
					if tt.connect {
						// What a transport that reports connections does.
						httptrace.ContextClientTrace(r.Context()).GotConn(httptrace.GotConnInfo{})
					}
					if tt.err != nil {
						return nil, tt.err
					}
					return respond(r, tt.status, nil, ""), nil
				}}
				e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: time.Second, WaitMax: time.Second, Budget: time.Minute}
				var seen []Attempt
				res, err := e.Do(newRequest(t, t.Context(), "POST"), func() (io.Reader, error) { return strings.NewReader("refresh_token=x"), nil },
					func(at Attempt) bool { seen = append(seen, at); return neverReplay(at) })
				if (err != nil) != (tt.err != nil) || (res.Response != nil) == (err != nil) {
					t.Fatalf("Do = %v, %v", res.Response, err)
				}
				if res.Response != nil {
					res.Response.Body.Close()
				}
				if res.Attempts != tt.wantTries || len(rt.attempts()) != tt.wantTries {
					t.Fatalf("%d attempts, want %d", len(rt.attempts()), tt.wantTries)
				}
				for _, at := range seen {
					if at.Connected != tt.connect {
						t.Errorf("attempt %d: Connected = %v, want %v", at.N, at.Connected, tt.connect)
					}
				}
			})
		})
	}
}

// With a real transport, GotConn reaches the policy: a connection reset
// after the connection was made is reported as connected, a refused dial
// is not.
func TestEngineConnectedOnRealTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the request arrived; the answer never comes
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/token"
	ln.Close()

	for _, tc := range []struct {
		url           string
		wantConnected bool
	}{{srv.URL + "/token", true}, {refused, false}} {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		e := &Engine{HTTPClient: &http.Client{Transport: tr}, MaxRetries: 1, WaitMin: time.Millisecond, WaitMax: time.Millisecond, Budget: time.Minute}
		req, _ := http.NewRequestWithContext(t.Context(), "POST", tc.url, nil)
		var seen []Attempt
		_, err := e.Do(req, func() (io.Reader, error) { return strings.NewReader("code=x"), nil }, func(at Attempt) bool {
			seen = append(seen, at)
			return false
		})
		if err == nil || len(seen) != 1 {
			t.Fatalf("%s: err %v after %d attempts, want an error after 1", tc.url, err, len(seen))
		}
		if seen[0].Connected != tc.wantConnected || NotSent(seen[0].Err) == tc.wantConnected {
			t.Errorf("%s: Connected %v, NotSent %v; want %v, %v", tc.url, seen[0].Connected, NotSent(seen[0].Err), tc.wantConnected, !tc.wantConnected)
		}
	}
}

// The context ending during a wait ends the call at once with the
// context's error and no response; the response that was waiting is closed.
func TestEngineContextEndsDuringWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{answer: func(_ int, r *http.Request) (*http.Response, error) {
			return respond(r, 503, http.Header{"Retry-After": {"8"}}, ""), nil
		}}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: time.Second, WaitMax: 10 * time.Second, Budget: time.Minute}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		res, err := e.Do(newRequest(t, ctx, "GET"), nil, statusPolicy)
		if !errors.Is(err, context.DeadlineExceeded) || res.Response != nil {
			t.Fatalf("Do = %v, %v; want DeadlineExceeded alone", res.Response, err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("returned after %v, want 1s", d)
		}
		if res.Attempts != 1 || rt.closes.Load() != 1 {
			t.Errorf("Attempts %d, %d bodies closed; want 1 and 1", res.Attempts, rt.closes.Load())
		}
	})
}

// go-retryablehttp's CloseIdleConnections after a failed call never reaches
// the transport, which is usually shared by the whole process.
func TestEngineKeepsIdleConnections(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{answer: func(_ int, r *http.Request) (*http.Response, error) {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 2, WaitMin: time.Second, WaitMax: time.Second, Budget: time.Minute}
		if _, err := e.Do(newRequest(t, t.Context(), "GET"), nil, always); err == nil {
			t.Fatal("Do succeeded, want the reset")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := e.Do(newRequest(t, ctx, "GET"), nil, always); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do = %v, want DeadlineExceeded", err)
		}
		if n := rt.idle.Load(); n != 0 {
			t.Errorf("the transport's idle connections were closed %d times, want 0", n)
		}
	})
}
