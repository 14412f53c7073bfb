package httpretry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
)

// Engine sends a request, and sends it again while its [Policy] allows,
// through go-retryablehttp. It owns the mechanics both of tokenward's retry
// users share: one wait formula (see [Engine.WaitMin]), the Retry-After cap,
// the total budget, the per-attempt connection signal, the attempt count
// and a redacting logger. The users only decide what may be repeated.
//
// An Engine is configured through its fields and is safe for concurrent
// use once configured; the fields must not change afterwards.
type Engine struct {
	// HTTPClient sends every attempt. Its CheckRedirect is the redirect
	// policy and its Timeout the limit of one attempt: the engine adds
	// neither, because a limit or a policy on the retry loop would never
	// be consulted by the client that actually follows redirects. Its
	// transport's CloseIdleConnections is never called by the engine (see
	// [Engine.Do]). Nil means http.DefaultClient.
	HTTPClient *http.Client

	// MaxRetries is the number of attempts after the first. Zero or less
	// means none.
	MaxRetries int

	// WaitMin and WaitMax bound the wait before a retry: WaitMin doubled
	// for each retry already made, capped at WaitMax, of which a random
	// part between a half and the whole is waited, so that many clients
	// failing together do not retry together. A Retry-After on a 429 or
	// 503 replaces that wait when it is at most WaitMax (plus a little
	// jitter: up to a tenth of it, or half of WaitMin when that is more,
	// never less than asked and never more than WaitMax); when it asks for
	// more than WaitMax the retries stop and [Result.RetryAfter] reports it.
	WaitMin, WaitMax time.Duration

	// Budget is the total time, from the start of [Engine.Do], within which
	// a retry may start: a retry whose wait would end after it is not made.
	// It never cuts an attempt short (the request's context does that).
	// Zero or less means no budget beyond MaxRetries.
	Budget time.Duration

	// Logger receives go-retryablehttp's messages through the redacting
	// adapter (URLs reduced to scheme://host/path, secrets removed). Nil
	// means no logging: go-retryablehttp's own default logger, which prints
	// full URLs to stderr, is never used.
	Logger *slog.Logger

	// LogPrefix starts every message, naming the user
	// ("transport: retry: ").
	LogPrefix string
}

// Attempt is what a [Policy] sees of one finished attempt.
type Attempt struct {
	// N is the attempt's number, 1 for the first.
	N int
	// Response is the attempt's response, nil when Err is set. Its body
	// must not be read: it goes to the caller, or is drained for reuse.
	Response *http.Response
	// Err is the error of the attempt, as the HTTPClient returned it
	// (usually a *url.Error), nil when there is a response.
	Err error
	// Connected reports that the transport announced a connection for this
	// attempt (httptrace GotConn). Its absence proves nothing on its own:
	// a transport may not report connections at all. Combined with
	// [NotSent], it is how a request carrying a single-use credential is
	// retried only when none of it can have left this machine.
	Connected bool
}

// Policy decides whether a failed attempt may be followed by another. It is
// asked after every attempt, before the engine looks at MaxRetries, the
// wait and the budget, and only while the request's context is alive. It
// runs on the goroutine that called [Engine.Do].
type Policy func(Attempt) bool

// BodyFunc builds the body of one attempt. The engine calls it once for
// every attempt, never reusing a body, so a body holding a credential that
// must not be presented twice (a private_key_jwt assertion) is made anew
// each time. When the reader has a Len method (bytes.Reader,
// strings.Reader) the attempt's ContentLength is set from it; otherwise the
// request's ContentLength is kept. A reader that is an io.Closer is closed
// by the HTTP client. An error ends the call with that error.
type BodyFunc func() (io.Reader, error)

// Result is the outcome of [Engine.Do].
type Result struct {
	// Response is the last response, with its body unread, when Do
	// returned no error; nil otherwise.
	Response *http.Response
	// Attempts is the number of attempts made, errors included.
	Attempts int
	// RetryAfter is the server's Retry-After, when it is what ended the
	// retries: longer than WaitMax, or than the budget still allows. Zero
	// otherwise.
	RetryAfter time.Duration
}

// Do sends req, retrying while policy allows, and returns the last response
// as it is (whatever its status) or an error, never both: a response that
// comes with an error is closed. The error is the HTTPClient's (a
// *url.Error, left as it is so callers can classify it), the context's
// when it ended during a wait, or body's. The attempt count is in the
// Result either way.
//
// req is the template of every attempt: its method, URL, header, context
// and ContentLength are used and it is never modified; its Body and
// GetBody are ignored: body (nil for a request without one) supplies every
// attempt's. A nil policy means no retry.
//
// go-retryablehttp closes the idle connections of its client when a call
// ends without success; the engine hides that method of the HTTPClient's
// transport, which is usually shared by every client of the process: one
// failed request must not drop the connections of all the others.
func (e *Engine) Do(req *http.Request, body BodyFunc, policy Policy) (Result, error) {
	c := &call{e: e, body: body, policy: policy, start: time.Now(), length: req.ContentLength}
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { c.connected.Store(true) },
	})
	out := req.WithContext(ctx) // a shallow copy: req is never modified
	out.GetBody = nil
	if out.Body != http.NoBody {
		out.Body = nil
	}
	if body == nil {
		out.ContentLength = 0
	}
	rreq := &retryablehttp.Request{Request: out}
	if body != nil {
		// SetBody calls the function once to learn the length; that first
		// call must not build a body (see call.nextBody).
		if err := rreq.SetBody(retryablehttp.ReaderFunc(c.nextBody)); err != nil {
			return Result{}, err
		}
	}

	hc := e.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	inner := *hc
	rt := inner.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	inner.Transport = keepIdle{rt}
	rc := &retryablehttp.Client{
		HTTPClient:     &inner,
		RetryWaitMin:   e.WaitMin,
		RetryWaitMax:   e.WaitMax,
		RetryMax:       max(e.MaxRetries, 0),
		CheckRetry:     c.checkRetry,
		Backoff:        c.backoff,
		RequestLogHook: c.beforeAttempt,
		// The last response goes back as it is, with its body, instead of
		// go-retryablehttp's "giving up" error that would hide it.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	if e.Logger != nil {
		// Set only when there is one: a nil Logger field means none, while
		// an adapter around a nil *slog.Logger would be called and panic.
		rc.Logger = leveledLogger{l: e.Logger, prefix: e.LogPrefix}
	}

	resp, err := rc.Do(rreq)
	res := Result{Attempts: c.attempts, RetryAfter: c.retryAfter}
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return res, err
	}
	res.Response = resp
	return res, nil
}

// call is the state of one [Engine.Do] across its attempts. Every hook of
// go-retryablehttp is a method of it, so no state travels through the
// request's context (CheckRetry and Backoff receive no request when an
// attempt failed without a response). Everything but connected is used on
// the calling goroutine only.
type call struct {
	e      *Engine
	body   BodyFunc
	policy Policy
	start  time.Time
	length int64 // the template's ContentLength

	probed     bool        // SetBody's length probe has been answered
	attempts   int         // attempts started
	attemptLen int64       // ContentLength of the body built for the current attempt
	connected  atomic.Bool // GotConn fired in the current attempt (set by the transport's goroutines)
	wait       time.Duration
	retryAfter time.Duration
}

// nextBody is the go-retryablehttp body function. Its first call comes
// from SetBody, which only wants a length: it gets an empty reader, so the
// caller's BodyFunc runs exactly once per attempt. The attempt's real
// length is set by beforeAttempt.
func (c *call) nextBody() (io.Reader, error) {
	if !c.probed {
		c.probed = true
		return bytes.NewReader(nil), nil
	}
	r, err := c.body()
	if err != nil {
		return nil, err
	}
	c.attemptLen = c.length
	if l, ok := r.(interface{ Len() int }); ok {
		c.attemptLen = int64(l.Len())
	}
	return r, nil
}

// beforeAttempt runs just before every attempt, after its body is built.
func (c *call) beforeAttempt(_ retryablehttp.Logger, r *http.Request, _ int) {
	c.attempts++
	c.connected.Store(false)
	if c.body != nil {
		r.ContentLength = c.attemptLen
	}
}

// checkRetry asks the policy, then MaxRetries, the wait and the budget.
func (c *call) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	at := Attempt{N: c.attempts, Response: resp, Err: err, Connected: c.connected.Load()}
	if c.policy == nil || !c.policy(at) || c.attempts > c.e.MaxRetries {
		return false, nil
	}
	wait, hint, ok := c.e.nextWait(c.attempts, resp, time.Now())
	if !ok {
		// The server asks for more than we are willing to wait between
		// attempts: stop now and tell the caller when to come back.
		c.retryAfter = hint
		return false, nil
	}
	if c.e.Budget > 0 && time.Since(c.start)+wait > c.e.Budget {
		c.retryAfter = hint
		return false, nil
	}
	c.wait = wait
	return true, nil
}

// backoff returns the wait checkRetry decided on.
func (c *call) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return c.wait
}

// keepIdle hides the CloseIdleConnections method of the transport it wraps
// from go-retryablehttp (see [Engine.Do]).
type keepIdle struct{ rt http.RoundTripper }

func (k keepIdle) RoundTrip(req *http.Request) (*http.Response, error) { return k.rt.RoundTrip(req) }
