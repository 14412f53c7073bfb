package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"

	"github.com/tokenward/tokenward/internal/httpretry"
	"github.com/tokenward/tokenward/internal/redact"
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
	o := &retryConfig{
		maxRetries: opts.MaxRetries,
		waitMin:    opts.WaitMin,
		waitMax:    opts.WaitMax,
		budget:     opts.Budget,
		maxBody:    opts.MaxReplayBody,
		rt:         rt,
		inner: &http.Client{
			Transport:     keepIdle{rt},
			CheckRedirect: opts.CheckRedirect,
			Timeout:       opts.AttemptTimeout,
		},
	}
	if o.maxRetries == 0 {
		o.maxRetries = DefaultMaxRetries
	} else if o.maxRetries < 0 {
		o.maxRetries = 0
	}
	if o.waitMax <= 0 {
		o.waitMax = DefaultRetryWaitMax
	}
	if o.waitMin <= 0 {
		o.waitMin = DefaultRetryWaitMin
	}
	o.waitMin = min(o.waitMin, o.waitMax)
	if o.budget <= 0 {
		o.budget = DefaultRetryBudget
	}
	if o.maxBody == 0 {
		o.maxBody = DefaultMaxReplayBody
	}
	if opts.Logger != nil {
		o.logger = retryLogger{opts.Logger}
	}
	return &http.Client{
		Transport: &retryTransport{o},
		// The inner client follows redirects; a 3xx reaching this level is
		// one the policy chose to hand back, so it must not be followed here.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type retryConfig struct {
	maxRetries       int
	waitMin, waitMax time.Duration
	budget           time.Duration
	maxBody          int64
	rt               http.RoundTripper // what inner sends through
	inner            *http.Client      // over keepIdle{rt}
	logger           any               // retryLogger or nil; go-retryablehttp's Logger field
}

// retryTransport runs go-retryablehttp for the requests that may be retried
// and sends the others once.
type retryTransport struct{ o *retryConfig }

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	o := t.o
	if !o.retryable(req) {
		resp, err := o.inner.Do(req)
		return result(resp, err)
	}

	// The caller's body is never sent: every attempt gets its own copy from
	// GetBody, so the original is closed here, exactly once.
	hasBody := req.Body != nil && req.Body != http.NoBody
	getBody := req.GetBody
	closeBody(req)

	out := new(http.Request)
	*out = *req
	out.Body, out.GetBody = nil, nil
	if req.Body == http.NoBody {
		out.Body = http.NoBody
	}
	rreq := &retryablehttp.Request{Request: out}
	if hasBody {
		if err := rreq.SetBody(retryablehttp.ReaderFunc(func() (io.Reader, error) { return getBody() })); err != nil {
			return nil, fmt.Errorf("transport: retry: request body: %w", err)
		}
		out.ContentLength = req.ContentLength
	}

	st := &retryState{o: o, start: time.Now()}
	rc := &retryablehttp.Client{
		HTTPClient:   o.inner,
		Logger:       o.logger,
		RetryWaitMin: o.waitMin,
		RetryWaitMax: o.waitMax,
		RetryMax:     o.maxRetries,
		CheckRetry:   st.checkRetry,
		Backoff:      st.backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(rreq)
	return result(resp, err)
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
	if ci, ok := t.o.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// keepIdle hides the CloseIdleConnections method of the transport it wraps
// from the inner client. go-retryablehttp calls the inner client's
// CloseIdleConnections whenever a request ends without success (the
// context ended during a backoff, retries ran out): on the base shared by
// every Transport without a Base, or on the caller's own, that would drop
// the idle connections of every other client in the process because of one
// request. Only an explicit CloseIdleConnections on the returned client
// reaches rt.
type keepIdle struct{ rt http.RoundTripper }

func (k keepIdle) RoundTrip(req *http.Request) (*http.Response, error) { return k.rt.RoundTrip(req) }

// retryable reports whether req may be sent more than once.
func (o *retryConfig) retryable(req *http.Request) bool {
	if o.maxRetries == 0 {
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
	return req.GetBody != nil && req.ContentLength > 0 && req.ContentLength <= o.maxBody
}

// retryState carries the decisions for one request across its attempts.
// go-retryablehttp's CheckRetry and Backoff see no request when there is no
// response, so each request gets its own state and client.
type retryState struct {
	o       *retryConfig
	start   time.Time
	retries int
	wait    time.Duration // decided by checkRetry, returned by backoff
}

func (s *retryState) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil && !transientError(err) {
		// Not a network failure: a redirect policy decision, a refused
		// origin, a token the source could not supply, a bad configuration.
		// Repeating the request cannot change the outcome.
		return false, nil
	}
	if retry, _ := retryablehttp.DefaultRetryPolicy(ctx, resp, err); !retry {
		return false, nil
	}
	if s.retries >= s.o.maxRetries {
		return false, nil
	}
	wait, ok := s.o.nextWait(s.retries, resp, time.Now())
	if !ok || time.Since(s.start)+wait > s.o.budget {
		return false, nil
	}
	s.retries++
	s.wait = wait
	return true, nil
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

func (s *retryState) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return s.wait
}

// nextWait returns the wait before retry number n+1; ok is false when the
// server asks for more than waitMax.
func (o *retryConfig) nextWait(n int, resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if ra, ok := httpretry.ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			if ra > o.waitMax {
				return 0, false
			}
			// At least what the server asked for, plus up to 10 % jitter.
			return min(ra+jitter(ra/10), o.waitMax), true
		}
	}
	d := o.waitMax
	if n < 30 {
		d = min(o.waitMin<<n, o.waitMax)
	}
	// Equal jitter: between half and all of the exponential step.
	return d/2 + jitter(d-d/2), true
}

// jitter returns a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// retryLogger adapts *slog.Logger to go-retryablehttp's LeveledLogger and
// scrubs what it logs: URLs are cut to scheme://host/path, everything else
// passes through redact.String.
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.log(slog.LevelError, msg, kv) }
func (r retryLogger) Info(msg string, kv ...any)  { r.log(slog.LevelInfo, msg, kv) }
func (r retryLogger) Debug(msg string, kv ...any) { r.log(slog.LevelDebug, msg, kv) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.log(slog.LevelWarn, msg, kv) }

var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"']+`)

// scrub removes secrets from free text that may contain URLs.
func scrub(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, redact.URLString)
	return redact.String(s)
}

func (r retryLogger) log(level slog.Level, msg string, kv []any) {
	ctx := context.Background()
	if !r.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		key, _ := kv[i].(string)
		if key == "" {
			key = "arg"
		}
		var v slog.Value
		switch x := kv[i+1].(type) {
		case string:
			v = slog.StringValue(scrub(x))
		case error:
			v = slog.StringValue(scrub(x.Error()))
		case *url.URL:
			v = slog.StringValue(redact.URL(x))
		case int:
			v = slog.IntValue(x)
		case time.Duration:
			v = slog.DurationValue(x)
		default:
			v = slog.StringValue(scrub(fmt.Sprint(x)))
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: v})
	}
	r.l.LogAttrs(ctx, level, "transport: retry: "+scrub(msg), attrs...)
}
