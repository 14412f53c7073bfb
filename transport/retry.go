package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenward/tokenward/internal/httpretry"
)

// Defaults of [RetryOptions].
const (
	DefaultMaxRetries    = 3
	DefaultRetryWaitMin  = 500 * time.Millisecond
	DefaultRetryWaitMax  = 10 * time.Second
	DefaultRetryBudget   = 60 * time.Second
	DefaultMaxReplayBody = 1 << 20
)

// RetryOptions configures [NewRetryClient]. Every zero field means its
// default.
type RetryOptions struct {
	// MaxRetries is the number of retries after the first attempt.
	// Optional; 0 means [DefaultMaxRetries], a negative value means none.
	MaxRetries int

	// WaitMin and WaitMax bound the wait before a retry: exponential from
	// WaitMin, capped at WaitMax, with jitter. WaitMax also caps Retry-After:
	// a 429 or 503 whose Retry-After asks for longer than WaitMax is not
	// retried but returned to the caller, who can read the header. Optional;
	// defaults [DefaultRetryWaitMin] and [DefaultRetryWaitMax]; WaitMin is
	// clamped to WaitMax.
	WaitMin, WaitMax time.Duration

	// Budget is the total time, from the first attempt, within which a
	// retry may start: a retry whose wait would end after it is not made and
	// the last response (or error) is returned. It does not cut an attempt
	// short; use the request's context (or Client.Timeout on the returned
	// client) for a hard deadline. Optional; default [DefaultRetryBudget].
	Budget time.Duration

	// MaxReplayBody is the largest request body, in bytes, that is replayed
	// for a retry. A body is replayed only through Request.GetBody and only
	// when its ContentLength is known and at most MaxReplayBody; any other
	// body is sent once, never buffered. Optional; default
	// [DefaultMaxReplayBody] (1 MiB); a negative value means only requests
	// without a body are retried.
	MaxReplayBody int64

	// AttemptTimeout limits each attempt (including the redirects it
	// follows and, for the attempt whose response is returned, reading its
	// body): it is the Timeout of the inner http.Client. Optional; 0 means
	// no per-attempt limit beyond the request's context.
	AttemptTimeout time.Duration

	// CheckRedirect is the redirect policy, installed on the inner
	// http.Client that actually follows redirects (a CheckRedirect set on
	// the returned client would never be consulted). Optional; nil means
	// net/http's default (at most 10 redirects). Whatever the policy, the
	// transport never attaches a token to another origin.
	CheckRedirect func(req *http.Request, via []*http.Request) error

	// Logger receives go-retryablehttp's messages (attempts, retries,
	// failures) with URLs reduced to scheme://host/path and secrets removed.
	// Optional; nil means no logging (go-retryablehttp's default logger,
	// which prints full URLs to stderr, is never used).
	Logger *slog.Logger
}

type idempotentKey struct{}

// WithIdempotent returns a context that marks requests made with it as
// safe to repeat, so that the client built by [NewRetryClient] may retry
// them even though their method (POST, PATCH) is not idempotent. Use it
// only when the server deduplicates, e.g. through an idempotency key.
func WithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// NewRetryClient returns an *http.Client that retries requests through
// go-retryablehttp, layered outside rt:
//
//	http.Client (returned) -> retry loop -> inner http.Client (redirects, AttemptTimeout) -> rt (usually a *Transport) -> network
//
// Because the retry loop is outside rt, every attempt asks rt's token
// source for the current token: a token that expires (or is replaced after
// a 401) during the backoff is not reused. rt's own single 401 resend stays
// the only reaction to a rejected token; the retry loop retries connection
// errors, 429 and 5xx (except 501), like go-retryablehttp's default policy.
// It never retries an error the [Transport] produced itself (a token the
// source could not supply, a refused origin, an unsupported token type, a
// failing Prepare hook), even one that wraps a network error: the token
// source has its own retry policy.
//
// A request is retried only when it is idempotent (GET, HEAD, OPTIONS,
// TRACE, PUT, DELETE; or it has an Idempotency-Key or X-Idempotency-Key
// header; or its context came from [WithIdempotent]) and its body can be
// replayed without buffering (see [RetryOptions.MaxReplayBody]). Any other
// request is sent exactly once through the same inner client, so redirect
// policy and timeouts are the same for both.
//
// When retries are exhausted, the budget is spent or the server asks to wait
// too long, the last response is returned as it is (with its body), not
// replaced by an error. The caller's request is never modified and its body
// is closed exactly once. A nil rt means the default base transport (no
// token).
func NewRetryClient(rt http.RoundTripper, optFns ...func(*RetryOptions)) *http.Client {
	var opts RetryOptions
	for _, fn := range optFns {
		if fn != nil {
			fn(&opts)
		}
	}
	if rt == nil {
		rt = defaultBase()
	}
	e := &httpretry.Engine{
		// The engine keeps go-retryablehttp's CloseIdleConnections away
		// from rt; a request sent once goes straight through this client,
		// which never calls it on its own.
		HTTPClient: &http.Client{
			Transport:     rt,
			CheckRedirect: opts.CheckRedirect,
			Timeout:       opts.AttemptTimeout,
		},
		MaxRetries: opts.MaxRetries,
		WaitMin:    opts.WaitMin,
		WaitMax:    opts.WaitMax,
		Budget:     opts.Budget,
		Logger:     opts.Logger,
		LogPrefix:  "transport: retry: ",
	}
	if e.MaxRetries == 0 {
		e.MaxRetries = DefaultMaxRetries
	} else if e.MaxRetries < 0 {
		e.MaxRetries = 0
	}
	if e.WaitMax <= 0 {
		e.WaitMax = DefaultRetryWaitMax
	}
	if e.WaitMin <= 0 {
		e.WaitMin = DefaultRetryWaitMin
	}
	e.WaitMin = min(e.WaitMin, e.WaitMax)
	if e.Budget <= 0 {
		e.Budget = DefaultRetryBudget
	}
	maxBody := opts.MaxReplayBody
	if maxBody == 0 {
		maxBody = DefaultMaxReplayBody
	}
	return &http.Client{
		Transport: &retryTransport{e: e, maxBody: maxBody, rt: rt},
		// The inner client follows redirects; a 3xx reaching this level is
		// one the policy chose to hand back, so it must not be followed here.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// retryTransport runs the retry engine for the requests that may be
// retried and sends the others once, through the same inner client.
type retryTransport struct {
	e       *httpretry.Engine
	maxBody int64
	rt      http.RoundTripper // what the engine's client sends through
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.retryable(req) {
		resp, err := t.e.HTTPClient.Do(req)
		return result(resp, err)
	}
	// The caller's body is never sent: every attempt gets its own copy from
	// GetBody, so the original is closed here, exactly once.
	var body httpretry.BodyFunc
	if req.Body != nil && req.Body != http.NoBody {
		getBody := req.GetBody
		body = func() (io.Reader, error) { return getBody() }
	}
	closeBody(req)
	res, err := t.e.Do(req, body, retryPolicy)
	return result(res.Response, err)
}

// result enforces "a response or an error" and removes the inner client's
// *url.Error, which the outer client adds again.
func result(resp *http.Response, err error) (*http.Response, error) {
	if err == nil {
		return resp, nil
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	return nil, err
}

// CloseIdleConnections closes the idle connections of the wrapped transport
// (for a nil rt, of the default base shared by the process).
func (t *retryTransport) CloseIdleConnections() {
	if ci, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// retryable reports whether req may be sent more than once.
func (t *retryTransport) retryable(req *http.Request) bool {
	if t.e.MaxRetries == 0 {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		_, k1 := req.Header["Idempotency-Key"]
		_, k2 := req.Header["X-Idempotency-Key"]
		if !k1 && !k2 && req.Context().Value(idempotentKey{}) == nil {
			return false
		}
	}
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	return req.GetBody != nil && req.ContentLength > 0 && req.ContentLength <= t.maxBody
}

// retryPolicy is the engine's policy for a request retryable allowed:
// transient network failures, 429 and 5xx (except 501).
func retryPolicy(at httpretry.Attempt) bool {
	if at.Err != nil {
		return transientError(at.Err) && !httpretry.Permanent(at.Err)
	}
	return httpretry.RetryableStatus(at.Response.StatusCode)
}

// transientError reports whether err, returned by the inner client, is a
// network failure worth another attempt: a net.Error (timeouts, refused or
// reset connections, DNS) or a connection closed mid-response. Errors of
// the transport itself (ErrOriginNotAllowed, ErrInvalidConfig, ErrUnsupportedTokenType,
// token source and Prepare failures; see localError) are not, even when
// they wrap a network error: a token source that could not reach its token
// endpoint has its own retry policy. Errors of the redirect policy are not
// either.
func transientError(err error) bool {
	var le *localError
	if errors.As(err, &le) {
		return false
	}
	var ue *url.Error
	for errors.As(err, &ue) {
		if ue.Err == nil {
			return false
		}
		err = ue.Err // *url.Error implements net.Error itself: look inside
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
