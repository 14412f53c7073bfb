package httpretry

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeRT answers every attempt in memory, so that engine tests run in
// synctest bubbles on fake time. It records what each attempt carried.
type fakeRT struct {
	answer func(n int, r *http.Request) (*http.Response, error)

	mu     sync.Mutex
	sent   []sentAttempt
	idle   atomic.Int32 // CloseIdleConnections calls
	closes atomic.Int32 // response bodies closed
}

type sentAttempt struct {
	body   string
	length int64
	header http.Header
}

func (f *fakeRT) RoundTrip(r *http.Request) (*http.Response, error) {
	var b []byte
	if r.Body != nil {
		b, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	f.mu.Lock()
	n := len(f.sent)
	f.sent = append(f.sent, sentAttempt{body: string(b), length: r.ContentLength, header: r.Header.Clone()})
	f.mu.Unlock()
	resp, err := f.answer(n, r)
	if resp != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, closes: &f.closes}
	}
	return resp, err
}

func (f *fakeRT) CloseIdleConnections() { f.idle.Add(1) }

func (f *fakeRT) attempts() []sentAttempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentAttempt(nil), f.sent...)
}

type countingBody struct {
	io.ReadCloser
	closes *atomic.Int32
}

func (c *countingBody) Close() error {
	c.closes.Add(1)
	return c.ReadCloser.Close()
}

// respond builds a response with the given status, header and body.
func respond(r *http.Request, status int, h http.Header, body string) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r, ContentLength: int64(len(body))}
}

// newRequest is a GET of https://as.example/token with the given context.
func newRequest(t *testing.T, ctx context.Context, method string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "https://as.example/token", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// always allows every retry.
func always(Attempt) bool { return true }

// statusPolicy retries 429 and 5xx (except 501) and every error.
func statusPolicy(at Attempt) bool {
	return at.Err != nil || RetryableStatus(at.Response.StatusCode)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// errCase is one row of a table of error classifications.
type errCase struct {
	name string
	err  error
	want bool
}

// checkErrs runs fn, named name in messages, over a table.
func checkErrs(t *testing.T, name string, fn func(error) bool, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		if got := fn(c.err); got != c.want {
			t.Errorf("%s: %s = %v, want %v", c.name, name, got, c.want)
		}
	}
}

// asURLError wraps err the way http.Client reports a failed request.
func asURLError(err error) error {
	return &url.Error{Op: "Post", URL: "https://as.example/token", Err: err}
}

// failThenOK answers failures times with status, then 200.
func failThenOK(failures, status int) func(int, *http.Request) (*http.Response, error) {
	return func(n int, r *http.Request) (*http.Response, error) {
		if n < failures {
			return respond(r, status, nil, ""), nil
		}
		return respond(r, 200, nil, ""), nil
	}
}
