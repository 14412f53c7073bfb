package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/tokenward/tokenward/internal/httpretry"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
)

// replay says whether a token-endpoint request may be sent again after it
// may have reached the server.
type replay int

const (
	// replayNever: the request carries a single-use credential (refresh
	// token, authorization code, device code). It is retried only when the
	// first attempt provably never left this machine (no connection was
	// obtained: dial or TLS failure), because a replay after the server saw
	// it burns a rotated refresh token or a one-time code (R-01, O-08).
	replayNever replay = iota
	// replaySafe: client credentials, device authorization requests and
	// revocation; retried on connection errors, 5xx (except 501) and 429.
	replaySafe
)

// endpointClient posts form requests to the authorization server's endpoints
// (token, device authorization, revocation) through go-retryablehttp with
// tokenward's own policy: no redirects, a total timeout, capped and jittered
// waits within a total budget, the last response passed through so the OAuth
// error body reaches the caller, and a redacting logger.
type endpointClient struct {
	rc      *retryablehttp.Client
	log     *slog.Logger
	timeout time.Duration // total per call, retries included
	budget  time.Duration // total time the retry loop may wait
	now     func() time.Time
}

// attempt is the per-call state the retry hooks share through the request
// context (retryablehttp's CheckRetry and Backoff receive no request when an
// attempt failed without a response).
type attempt struct {
	policy    replay
	connected atomic.Bool // a connection was obtained in the current attempt
	start     time.Time
	budget    time.Duration
	waitMin   time.Duration
	waitMax   time.Duration
	next      atomic.Int64 // the wait CheckRetry decided on, in ns
	overflow  atomic.Int64 // a Retry-After that exceeded the budget, in ns
	attempts  atomic.Int32
	bodyLen   atomic.Int64 // length of the body built for the current attempt
	now       func() time.Time
}

type attemptKey struct{}

func newEndpointClient(hc *http.Client, log *slog.Logger, timeout, budget, waitMin, waitMax time.Duration, retryMax int) *endpointClient {
	inner := *hc
	// The token endpoint never redirects a client anywhere it should follow:
	// a redirect would carry codes, refresh tokens and client secrets to
	// another origin (PITFALLS O-09, Gitlawb/zero#729).
	inner.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	inner.Timeout = 0 // the total timeout is the call's context

	rc := &retryablehttp.Client{
		HTTPClient:   &inner,
		Logger:       slogLeveled{log},
		RetryWaitMin: waitMin,
		RetryWaitMax: waitMax,
		RetryMax:     retryMax,
		CheckRetry:   checkRetry,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		RequestLogHook: func(_ retryablehttp.Logger, r *http.Request, _ int) {
			if a, ok := r.Context().Value(attemptKey{}).(*attempt); ok {
				a.connected.Store(false)
				a.attempts.Add(1)
				r.ContentLength = a.bodyLen.Load()
			}
		},
	}
	return &endpointClient{rc: rc, log: log, timeout: timeout, budget: budget, now: time.Now}
}

// response is a token-endpoint answer read in full (capped at oauthwire.MaxBody).
type response struct {
	status int
	header http.Header
	body   []byte
	sent   time.Time // when the (last) request was sent
}

// post sends form to endpoint with the client authentication applied. The
// body is rebuilt for every attempt, so a private_key_jwt assertion is never
// sent twice. It returns the response whatever its status; errors are
// transport-level only and already classified (timeout, network, rate limit,
// redirect, oversized body).
func (c *endpointClient) post(ctx context.Context, endpoint string, form url.Values, auth clientAuth, policy replay) (*response, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ep := redact.URLString(endpoint)

	a := &attempt{policy: policy, start: c.now(), budget: c.budget, waitMin: c.rc.RetryWaitMin, waitMax: c.rc.RetryWaitMax, now: c.now}
	ctx = context.WithValue(ctx, attemptKey{}, a)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { a.connected.Store(true) },
	})

	header := http.Header{}
	build := func() ([]byte, error) {
		f := cloneValues(form)
		h := http.Header{}
		if err := auth.apply(f, h); err != nil {
			return nil, err
		}
		for k, v := range h {
			header[k] = v
		}
		return []byte(f.Encode()), nil
	}
	first, err := build()
	if err != nil {
		return nil, err
	}
	pending := first
	body := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		if pending != nil {
			b := pending
			pending = nil
			return bytes.NewReader(b), nil
		}
		b, err := build()
		if err != nil {
			return nil, err
		}
		a.bodyLen.Store(int64(len(b)))
		return bytes.NewReader(b), nil
	})
	a.bodyLen.Store(int64(len(first)))
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, endpoint, body)
	if err != nil {
		return nil, &EndpointError{Endpoint: ep, Err: fmt.Errorf("client: %w: bad endpoint URL", ErrInvalidConfig)}
	}
	// NewRequest consumed one body to learn its length; the next attempt
	// (the first one sent) must still get the first body.
	pending = first
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	sent := c.now()
	resp, err := c.rc.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, c.transportError(parent, ep, a, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	if err != nil {
		return nil, c.transportError(parent, ep, a, err)
	}
	if len(data) > oauthwire.MaxBody {
		return nil, &EndpointError{Endpoint: ep, Status: resp.StatusCode, Err: fmt.Errorf("%w: response body larger than %d bytes", ErrBadResponse, oauthwire.MaxBody)}
	}
	if n := a.attempts.Load(); n > 1 {
		c.log.LogAttrs(ctx, slog.LevelDebug, "client: endpoint answered after retries",
			slog.String("endpoint", ep), slog.Int("attempts", int(n)), slog.Int("status", resp.StatusCode))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &EndpointError{Endpoint: ep, Status: resp.StatusCode,
			Err: fmt.Errorf("%w: endpoint answered %d with a redirect, which tokenward never follows", ErrBadResponse, resp.StatusCode)}
	}
	hint, hasHint := httpretry.ParseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	if resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode == http.StatusServiceUnavailable && (hasHint || a.overflow.Load() > 0)) {
		// The server said when to come back: a typed error with its hint
		// whether or not this request could be retried.
		if over := time.Duration(a.overflow.Load()); over > 0 {
			hint = over
		}
		code := oauthwire.ParseErrorResponse(resp.StatusCode, resp.Header, data).Code
		return nil, &RateLimitError{Endpoint: ep, Status: resp.StatusCode, RetryAfter: hint, Code: code, Attempts: int(a.attempts.Load())}
	}
	// Expiry is computed from when the call started: never later than the
	// server's own clock would put it.
	return &response{status: resp.StatusCode, header: resp.Header, body: data, sent: sent}, nil
}

// transportError classifies a failure that produced no usable response.
func (c *endpointClient) transportError(parent context.Context, ep string, a *attempt, err error) error {
	if perr := parent.Err(); perr != nil {
		// The caller's own deadline or cancellation, not the endpoint's
		// timeout: keep context.DeadlineExceeded / Canceled in the chain.
		return &EndpointError{Endpoint: ep, Err: fmt.Errorf("the caller's context ended after %d attempt(s): %w", a.attempts.Load(), perr)}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &EndpointError{Endpoint: ep, Err: fmt.Errorf("%w (after %s, %d attempt(s)): %w", ErrTokenEndpointTimeout, c.now().Sub(a.start).Round(time.Millisecond), a.attempts.Load(), refresh.ErrNetwork)}
	case errors.Is(err, context.Canceled):
		return err
	}
	return &EndpointError{Endpoint: ep, Err: netCause(err)}
}

// netCause wraps a transport failure as ErrNetwork, keeping the cause in the
// chain (so callers can still tell a dial error from a reset) but with a
// message stripped of the request URL and redacted.
func netCause(err error) error {
	return &causeError{msg: refresh.ErrNetwork.Error() + ": " + redact.Truncate(stripURL(err).Error(), 300), errs: []error{refresh.ErrNetwork, err}}
}

type causeError struct {
	msg  string
	errs []error
}

func (e *causeError) Error() string   { return e.msg }
func (e *causeError) Unwrap() []error { return e.errs }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stripURL unwraps *url.Error, whose message repeats the full request URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkRetry is the retry policy (see replay). It stops when the context
// ends, when the request may have consumed a single-use credential, and when
// the next wait would exceed the call's budget.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return false, nil
	}
	retry := false
	switch {
	case err != nil:
		if permanent(err) {
			return false, nil
		}
		if a.policy == replayNever {
			// Only when the failure is positively one that happens before
			// a connection exists (name resolution, dial) and no connection
			// was reported: then not a byte of the request can have reached
			// the server. A missing signal is never taken as proof (a custom
			// base transport may not report connections at all).
			retry = !a.connected.Load() && httpretry.NotSent(err)
		} else {
			retry = true
		}
	case a.policy == replayNever:
		retry = false
	case resp.StatusCode == http.StatusTooManyRequests:
		retry = true
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		retry = true
	}
	if !retry {
		return false, nil
	}
	wait := computeWait(a, resp)
	hint, hasHint := time.Duration(0), false
	if resp != nil {
		hint, hasHint = httpretry.ParseRetryAfter(resp.Header.Get("Retry-After"), a.now())
	}
	elapsed := a.now().Sub(a.start)
	if hasHint && hint > a.waitMax {
		// The server asks for more than we are willing to wait between
		// attempts: stop now and tell the caller when to come back.
		a.overflow.Store(int64(hint))
		return false, nil
	}
	if elapsed+wait > a.budget {
		if hasHint {
			a.overflow.Store(int64(hint))
		}
		return false, nil
	}
	a.next.Store(int64(wait))
	return true, nil
}

// permanent reports transport errors that a retry cannot fix: certificate
// verification failures and malformed requests.
func permanent(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var ue *url.Error
	return errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) ||
		(errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "unsupported protocol scheme"))
}

// computeWait is exponential backoff with full jitter between waitMin and
// waitMax, or the server's Retry-After (capped at waitMax) plus jitter.
func computeWait(a *attempt, resp *http.Response) time.Duration {
	n := int(a.attempts.Load()) - 1 // retries so far, as retryablehttp counts them
	if resp == nil {
		// backoff cannot see this attempt's state without a response, so
		// the wait after a connection error is the deterministic
		// exponential one, which both compute alike.
		return expWait(a.waitMin, a.waitMax, n)
	}
	if ra, ok := httpretry.ParseRetryAfter(resp.Header.Get("Retry-After"), a.now()); ok {
		if ra > a.waitMax {
			ra = a.waitMax
		}
		return ra + jitter(a.waitMin/2)
	}
	// Full jitter over the exponential step, so a fleet of clients does
	// not retry in lockstep.
	return a.waitMin/2 + jitter(expWait(a.waitMin, a.waitMax, n))
}

// expWait is waitMin doubled n times, capped at waitMax.
func expWait(waitMin, waitMax time.Duration, n int) time.Duration {
	d := waitMin << min(max(n, 0), 20)
	if d <= 0 || d > waitMax {
		d = waitMax
	}
	return d
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// backoff returns the wait checkRetry decided on for this attempt (see
// computeWait).
func backoff(minWait, maxWait time.Duration, attemptNum int, resp *http.Response) time.Duration {
	if resp != nil && resp.Request != nil {
		if a, ok := resp.Request.Context().Value(attemptKey{}).(*attempt); ok {
			return time.Duration(a.next.Load())
		}
	}
	return expWait(minWait, maxWait, attemptNum)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// slogLeveled adapts *slog.Logger to retryablehttp.LeveledLogger, passing
// every value through redaction: retryablehttp logs URLs (with queries) and
// wrapped errors that repeat them.
type slogLeveled struct{ l *slog.Logger }

func (s slogLeveled) redacted(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch x := v.(type) {
		case string:
			if i%2 == 1 && (strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://")) {
				out[i] = redact.URLString(x)
			} else {
				out[i] = redact.String(x)
			}
		case error:
			out[i] = redact.Truncate(stripURL(x).Error(), 300)
		case *url.URL:
			out[i] = redact.URL(x)
		case fmt.Stringer:
			out[i] = redact.String(x.String())
		case int, int64, int32, time.Duration, bool:
			out[i] = x
		default:
			out[i] = redact.String(fmt.Sprint(x))
		}
	}
	return out
}

func (s slogLeveled) Error(msg string, kv ...any) {
	s.l.Error("client: retryablehttp: "+redact.String(msg), s.redacted(kv)...)
}
func (s slogLeveled) Info(msg string, kv ...any) {
	s.l.Info("client: retryablehttp: "+redact.String(msg), s.redacted(kv)...)
}
func (s slogLeveled) Debug(msg string, kv ...any) {
	s.l.Debug("client: retryablehttp: "+redact.String(msg), s.redacted(kv)...)
}
func (s slogLeveled) Warn(msg string, kv ...any) {
	s.l.Warn("client: retryablehttp: "+redact.String(msg), s.redacted(kv)...)
}
