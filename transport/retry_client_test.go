package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// Tests of the retry client over a Transport: what it does with the
// transport's own errors, with the base's network errors, and with the
// base's idle connections.

// Errors the transport produces itself are never retried by the retry
// client, even when they wrap a network error (a token source whose token
// endpoint reset the connection; a Prepare hook that could not reach a
// signing service). The token source has its own retry policy.
func TestRetryClientNeverRetriesTransportErrors(t *testing.T) {
	t.Parallel()
	netErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name    string
		url     string
		host    string // req.Host, if set
		src     func(*fakeSource)
		opt     func(*transport.Options)
		wantErr error
	}{
		{name: "token source wraps a net error", url: "https://api.example.com/",
			src:     func(s *fakeSource) { s.err = fmt.Errorf("refresh: token endpoint: %w", netErr) },
			wantErr: syscall.ECONNRESET},
		{name: "token source is a net error", url: "https://api.example.com/",
			src:     func(s *fakeSource) { s.err = netErr },
			wantErr: syscall.ECONNRESET},
		{name: "token source: unexpected EOF", url: "https://api.example.com/",
			src:     func(s *fakeSource) { s.err = fmt.Errorf("refresh: %w", io.ErrUnexpectedEOF) },
			wantErr: io.ErrUnexpectedEOF},
		{name: "prepare hook wraps a net error", url: "https://api.example.com/",
			opt: func(tr *transport.Options) {
				tr.Prepare = func(*http.Request, *oauth2.Token) error { return fmt.Errorf("dpop signer: %w", netErr) }
			},
			wantErr: syscall.ECONNRESET},
		{name: "unsupported token type", url: "https://api.example.com/",
			src:     func(s *fakeSource) { s.tokenType = "MAC" },
			wantErr: transport.ErrUnsupportedTokenType},
		{name: "refused origin", url: "https://other.example.com/",
			wantErr: transport.ErrOriginNotAllowed},
		{name: "refused Host header", url: "https://api.example.com/", host: "tenant-b.example.net",
			wantErr: transport.ErrOriginNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				if tt.src != nil {
					tt.src(src)
				}
				base := &memBase{}
				var prepares atomic.Int32
				tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) {
					tr.RejectOtherOrigins = true
					if tt.opt != nil {
						tt.opt(tr)
					}
					if p := tr.Prepare; p != nil {
						tr.Prepare = func(r *http.Request, tok *oauth2.Token) error { prepares.Add(1); return p(r, tok) }
					}
				})
				client := transport.NewRetryClient(tr, retryOpts(transport.RetryOptions{MaxRetries: 3}))
				req, _ := http.NewRequest("GET", tt.url, nil)
				if tt.host != "" {
					req.Host = tt.host
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil || resp != nil {
					t.Fatalf("Do = %v, %v; want an error", resp, err)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want it to wrap %v", err, tt.wantErr)
				}
				if _, calls, _, _ := src.stats(); calls > 1 {
					t.Errorf("token source asked %d times, want at most 1 (no retry)", calls)
				}
				if n := prepares.Load(); n > 1 {
					t.Errorf("Prepare called %d times, want at most 1 (no retry)", n)
				}
				if n := len(base.requests()); n != 0 {
					t.Errorf("%d requests reached the base, want 0", n)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("took %v of backoff, want none", d)
				}
			})
		})
	}
}

// A network error from Base itself is still retried (the other side of the
// line drawn above).
func TestRetryClientStillRetriesBaseNetErrors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		netErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		base := &memBase{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n == 0 {
				return nil, netErr
			}
			return respond(r, 200, nil, "ok"), nil
		}}
		client := retryStack(t, newFakeSource(), base, transport.RetryOptions{})
		resp, err := client.Get("https://api.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := len(base.requests()); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})
}

// closeCountingBase counts CloseIdleConnections calls.
type closeCountingBase struct {
	memBase
	closes atomic.Int32
}

func (b *closeCountingBase) CloseIdleConnections() { b.closes.Add(1) }

// go-retryablehttp closes the idle connections of its HTTP client when a
// request ends without success: the context ending during a backoff,
// retries running out. Those must not reach the base, which is usually the
// process-wide default shared by every client; an explicit
// CloseIdleConnections on the retry client still does.
func TestRetryClientDoesNotCloseBaseIdleConnections(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		timeout time.Duration // of the request's context; 0: none
		wantErr error
	}{
		{name: "context ends during backoff", timeout: time.Second, wantErr: context.DeadlineExceeded},
		{name: "retries exhausted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				base := &closeCountingBase{}
				base.answer = func(_ int, r *http.Request) (*http.Response, error) {
					return respond(r, 503, http.Header{"Retry-After": {"2"}}, ""), nil
				}
				client := retryStack(t, newFakeSource(), base, transport.RetryOptions{MaxRetries: 2, WaitMax: 10 * time.Second})
				ctx := context.Background()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.example.com/", nil)
				resp, err := client.Do(req)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
				}
				if n := base.closes.Load(); n != 0 {
					t.Errorf("base's idle connections closed %d times by the retry loop, want 0", n)
				}
				client.CloseIdleConnections()
				if n := base.closes.Load(); n != 1 {
					t.Errorf("explicit CloseIdleConnections reached the base %d times, want 1", n)
				}
			})
		})
	}
}
