package transport_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// Every request body is closed exactly once on every path, and every path
// returns a response or an error, never both: the http.RoundTripper
// contract, which callers rely on to release connections and files.
func TestBodyClosedExactlyOnce(t *testing.T) {
	t.Parallel()
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	ok := func(_ int, r *http.Request) (*http.Response, error) { return respond(r, 200, nil, "ok"), nil }
	reject401 := func(_ int, r *http.Request) (*http.Response, error) {
		return respond(r, 401, invalidTokenHeader(), ""), nil
	}
	first401 := func(n int, r *http.Request) (*http.Response, error) {
		if n == 0 {
			return respond(r, 401, invalidTokenHeader(), ""), nil
		}
		return respond(r, 200, nil, ""), nil
	}
	tests := []struct {
		name       string
		url        string
		replayable bool
		answer     func(int, *http.Request) (*http.Response, error)
		opt        func(*transport.Options)
		src        func(*fakeSource)
		notNew     bool // a zero Transport, not made by New: every request fails
		wantErr    bool
		wantSent   int // requests the base received
		wantCopies int // GetBody copies made, each must be closed once
	}{
		{name: "success", url: "https://api.example.com/", answer: ok, wantSent: 1},
		{name: "base error", url: "https://api.example.com/", answer: func(int, *http.Request) (*http.Response, error) { return nil, netErr }, wantErr: true, wantSent: 1},
		{name: "other origin, sent without token", url: "https://other.example.com/", answer: ok, wantSent: 1},
		{name: "other origin, refused", url: "https://other.example.com/", answer: ok,
			opt: func(tr *transport.Options) { tr.RejectOtherOrigins = true }, wantErr: true},
		{name: "token source error", url: "https://api.example.com/", answer: ok,
			src: func(s *fakeSource) { s.err = errors.New("refresh failed") }, wantErr: true},
		{name: "unsupported token type", url: "https://api.example.com/", answer: ok,
			src: func(s *fakeSource) { s.tokenType = "DPoP" }, wantErr: true},
		{name: "prepare error", url: "https://api.example.com/", answer: ok,
			opt: func(tr *transport.Options) {
				tr.Prepare = func(*http.Request, *oauth2.Token) error { return errors.New("no key") }
			}, wantErr: true},
		{name: "not created with New", url: "https://api.example.com/", answer: ok,
			notNew: true, wantErr: true},
		{name: "401 resend", url: "https://api.example.com/", replayable: true, answer: first401, wantSent: 2, wantCopies: 1},
		{name: "401 twice", url: "https://api.example.com/", replayable: true, answer: reject401, wantSent: 2, wantCopies: 1},
		{name: "401 not replayable", url: "https://api.example.com/", answer: reject401, wantSent: 1},
		{name: "401 then base error on resend", url: "https://api.example.com/", replayable: true, wantErr: true, wantSent: 2, wantCopies: 1,
			answer: func(n int, r *http.Request) (*http.Response, error) {
				if n == 0 {
					return respond(r, 401, invalidTokenHeader(), ""), nil
				}
				return nil, netErr
			}},
		{name: "401, resend prepare fails", url: "https://api.example.com/", replayable: true, answer: reject401, wantSent: 1, wantCopies: 1,
			opt: func(tr *transport.Options) {
				calls := 0
				tr.Prepare = func(*http.Request, *oauth2.Token) error {
					if calls++; calls > 1 {
						return errors.New("no key")
					}
					return nil
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeSource()
			if tt.src != nil {
				tt.src(src)
			}
			base := &memBase{answer: tt.answer}
			tr := &transport.Transport{}
			if !tt.notNew {
				tr = mustNew(t, src, toAPI(base), tt.opt)
			}
			var copies []*readCloseCounter
			req, body := bodyRequest(t, "POST", tt.url, "payload", tt.replayable, &copies)
			resp, err := tr.RoundTrip(req)
			if (resp == nil) == (err == nil) {
				t.Fatalf("RoundTrip returned resp %v and err %v: want exactly one", resp != nil, err)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("caller's body closed %d times, want 1", n)
			}
			if len(copies) != tt.wantCopies {
				t.Errorf("GetBody called %d times, want %d", len(copies), tt.wantCopies)
			}
			for i, c := range copies {
				if n := c.closes.Load(); n != 1 {
					t.Errorf("GetBody copy %d closed %d times, want 1", i, n)
				}
			}
			if n := len(base.requests()); n != tt.wantSent {
				t.Errorf("base got %d requests, want %d", n, tt.wantSent)
			}
		})
	}
}

// The same accounting through the retry client: the caller's body once, and
// every replayed copy once.
func TestRetryClientBodyClosedExactlyOnce(t *testing.T) {
	t.Parallel()
	netErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name       string
		replayable bool
		idempotent bool
		answer     func(int, *http.Request) (*http.Response, error)
		wantErr    bool
		wantSent   int
	}{
		{"retried until success", true, true, func(n int, r *http.Request) (*http.Response, error) {
			if n < 2 {
				return respond(r, 503, nil, ""), nil
			}
			return respond(r, 200, nil, ""), nil
		}, false, 3},
		{"network errors until exhausted", true, true, func(int, *http.Request) (*http.Response, error) { return nil, netErr }, true, 3},
		{"not marked idempotent: sent once", true, false, func(_ int, r *http.Request) (*http.Response, error) {
			return respond(r, 503, nil, ""), nil
		}, false, 1},
		{"not replayable: sent once", false, true, func(_ int, r *http.Request) (*http.Response, error) {
			return respond(r, 503, nil, ""), nil
		}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := &memBase{answer: tt.answer}
			tr := mustNew(t, newFakeSource(), toAPI(base))
			client := transport.NewRetryClient(tr, retryOpts(transport.RetryOptions{MaxRetries: 2, WaitMin: 1, WaitMax: 1}))
			var copies []*readCloseCounter
			req, body := bodyRequest(t, "POST", "https://api.example.com/", "payload", tt.replayable, &copies)
			if tt.idempotent {
				req = req.WithContext(transport.WithIdempotent(context.Background()))
			}
			resp, err := client.Do(req)
			if (err != nil) != tt.wantErr || (resp == nil) == (err == nil) {
				t.Fatalf("Do = %v, %v", resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("caller's body closed %d times, want 1", n)
			}
			for i, c := range copies {
				if n := c.closes.Load(); n != 1 {
					t.Errorf("copy %d closed %d times, want 1", i, n)
				}
			}
			reqs := base.requests()
			if len(reqs) != tt.wantSent {
				t.Fatalf("base got %d requests, want %d", len(reqs), tt.wantSent)
			}
			for i, r := range reqs {
				if r.Body != "payload" {
					t.Errorf("attempt %d body %q", i, r.Body)
				}
			}
		})
	}
}
