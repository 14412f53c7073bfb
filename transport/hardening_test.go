package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

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
				tr := mustNew(t, src, func(tr *transport.Options) {
					tr.Base = base
					tr.Origins = []string{"https://api.example.com"}
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

// A caller-set Authorization header under a non-canonical key
// ("authorization", "AUTHORIZATION") is not sent next to the token: the
// allowed origin sees exactly one Authorization value, the token. The
// caller's header map is untouched.
func TestNonCanonicalAuthorizationReplaced(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seenAuth [][]string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Values("Authorization"))
		mu.Unlock()
	}))
	defer srv.Close()
	src := newFakeSource()
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Origins = []string{srv.URL}
		tr.Base = srv.Client().Transport
	})
	for _, keys := range [][]string{{"authorization"}, {"AUTHORIZATION"}, {"Authorization", "authorization", "aUTHORIZATION"}} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		for _, k := range keys {
			req.Header[k] = []string{"Basic dXNlcjpwYXNz"}
		}
		before := fmt.Sprint(req.Header)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if after := fmt.Sprint(req.Header); after != before {
			t.Errorf("caller's header changed: %s -> %s", before, after)
		}
	}
	want := "Bearer " + src.current(t).AccessToken
	mu.Lock()
	defer mu.Unlock()
	for i, got := range seenAuth {
		if len(got) != 1 || got[0] != want {
			t.Errorf("request %d: server saw Authorization %q, want only the token", i, got)
		}
	}
}

// The same with a token type that Prepare sends (DPoP): the caller's
// variants are dropped before Prepare runs, so only what Prepare sets goes
// out.
func TestNonCanonicalAuthorizationReplacedForPrepareTypes(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	src.tokenType = "DPoP"
	var sent http.Header
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Origins = []string{"https://api.example.com"}
		tr.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = r.Header
			return respond(r, 200, nil, ""), nil
		})
		tr.PrepareTokenTypes = []string{"DPoP"}
		tr.Prepare = func(r *http.Request, tok *oauth2.Token) error {
			r.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			return nil
		}
	})
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	req.Header["authorization"] = []string{"Basic dXNlcjpwYXNz"}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var n int
	for k := range sent {
		if strings.EqualFold(k, "Authorization") {
			n++
		}
	}
	if n != 1 || sent.Get("Authorization") != "DPoP "+src.current(t).AccessToken {
		t.Errorf("sent %d Authorization keys: %v", n, sent)
	}
	if len(req.Header["authorization"]) != 1 {
		t.Error("caller's header changed")
	}
}

// req.Host is where a virtual-hosting front end routes the request: a Host
// that names another host (or port) than the allowed URL.Host is another
// origin, and gets no token (or ErrOriginNotAllowed with
// RejectOtherOrigins). Case and default ports do not count.
func TestHostHeaderIsPartOfTheOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host      string
		wantToken bool
	}{
		{"", true},
		{"api.example.com", true},
		{"API.Example.COM", true},
		{"api.example.com:443", true},
		{"tenant-b.other-company.example", false},
		{"api.example.com:8443", false},
		{"api.example.com.evil.example", false},
		{"api.example.com:80", false},
		{":443", false},
	}
	for _, tt := range tests {
		t.Run("host="+tt.host, func(t *testing.T) {
			t.Parallel()
			for _, reject := range []bool{false, true} {
				src := newFakeSource()
				base := &memBase{}
				tr := mustNew(t, src, func(tr *transport.Options) {
					tr.Base = base
					tr.Origins = []string{"https://api.example.com"}
					tr.RejectOtherOrigins = reject
				})
				req, body := bodyRequest(t, "POST", "https://api.example.com/v1", "x", false, nil)
				req.Host = tt.host
				resp, err := tr.RoundTrip(req)
				if body.closes.Load() != 1 {
					t.Errorf("reject=%v: body closed %d times", reject, body.closes.Load())
				}
				if reject && !tt.wantToken {
					if !errors.Is(err, transport.ErrOriginNotAllowed) || resp != nil {
						t.Errorf("reject: RoundTrip = %v, %v; want ErrOriginNotAllowed", resp, err)
					}
					if len(base.requests()) != 0 {
						t.Error("reject: request sent")
					}
					continue
				}
				if err != nil {
					t.Fatalf("reject=%v: %v", reject, err)
				}
				resp.Body.Close()
				got := base.requests()[0].Auth
				if tt.wantToken && got != "Bearer "+src.current(t).AccessToken {
					t.Errorf("reject=%v: Authorization = %q, want the token", reject, got)
				}
				if !tt.wantToken && got != "" {
					t.Errorf("reject=%v: the token went to Host %q", reject, tt.host)
				}
			}
		})
	}
}

// The same end to end: a TLS front end that routes on Host sees the other
// tenant's Host and no token.
func TestHostHeaderOverrideOverTheWire(t *testing.T) {
	t.Parallel()
	var gotHost, gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotAuth = r.Host, r.Header.Get("Authorization")
	}))
	defer srv.Close()
	tr := mustNew(t, newFakeSource(), func(tr *transport.Options) {
		tr.Origins = []string{srv.URL}
		tr.Base = srv.Client().Transport
	})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Host = "tenant-b.other-company.example"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotHost != req.Host || gotAuth != "" {
		t.Errorf("front end saw Host %q with Authorization %q, want no token", gotHost, gotAuth)
	}
}

// Every request gets its own Authorization slice: a Base that rewrites a
// header value in place (a redacting logger, against the RoundTripper
// contract) cannot change what later requests send.
func TestBaseRewritingHeaderValuesInPlace(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	var sent []string
	tr := mustNew(t, src, func(tr *transport.Options) {
		tr.Origins = []string{"https://api.example.com"}
		tr.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = append(sent, r.Header.Get("Authorization"))
			r.Header["Authorization"][0] = "REDACTED" // misbehaving middleware
			return respond(r, 200, nil, ""), nil
		})
	})
	for range 3 {
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := "Bearer " + src.current(t).AccessToken
	for i, got := range sent {
		if got != want {
			t.Errorf("request %d sent Authorization %q, want the token", i, got)
		}
	}
}

// A Base that returns neither a response nor an error gets an error, not a
// panic (nor a nil response handed on); one that returns both has its
// response closed and only the error passed on.
func TestBaseBreakingTheContract(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		url  string
		both bool // return a response and an error
		code int  // status of the response, with both
	}{
		{name: "nil, nil", url: "https://api.example.com/"},
		{name: "nil, nil, other origin", url: "https://other.example.com/"},
		{name: "response and error", url: "https://api.example.com/", both: true, code: 200},
		{name: "401 and error", url: "https://api.example.com/", both: true, code: 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var respBody *trackedBody
			boom := errors.New("base failed")
			tr := mustNew(t, newFakeSource(), func(tr *transport.Options) {
				tr.Origins = []string{"https://api.example.com"}
				tr.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if !tt.both {
						return nil, nil // does not close the body either
					}
					r.Body.Close()
					respBody = &trackedBody{Reader: strings.NewReader("")}
					resp := respond(r, tt.code, invalidTokenHeader(), "")
					resp.Body = respBody
					return resp, boom
				})
			})
			req, body := bodyRequest(t, "POST", tt.url, "payload", true, new([]*readCloseCounter))
			var resp *http.Response
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("RoundTrip panicked: %v", p)
					}
				}()
				resp, err = tr.RoundTrip(req)
			}()
			if err == nil || resp != nil {
				t.Fatalf("RoundTrip = %v, %v; want only an error", resp, err)
			}
			if tt.both && (!errors.Is(err, boom) || !respBody.closed.Load()) {
				t.Errorf("err = %v, response closed %v", err, respBody.closed.Load())
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("body closed %d times, want 1", n)
			}
		})
	}
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
