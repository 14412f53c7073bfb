package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenward/tokenward/internal/httpretry"
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
	// it burns a rotated refresh token or a one-time code, and can get the
	// whole token family revoked.
	replayNever replay = iota
	// replaySafe: client credentials, device authorization requests and
	// revocation; retried on connection errors, 5xx (except 501) and 429.
	replaySafe
)

// allows is the replay policy the retry engine asks after every failed
// attempt.
func (p replay) allows(at httpretry.Attempt) bool {
	if at.Err != nil {
		if httpretry.Permanent(at.Err) {
			return false
		}
		if p == replayNever {
			// Only when the failure is positively one that happens before
			// a connection exists (name resolution, dial) and no connection
			// was reported: then not a byte of the request can have reached
			// the server. A missing signal is never taken as proof (a custom
			// base transport may not report connections at all).
			return !at.Connected && httpretry.NotSent(at.Err)
		}
		return true
	}
	// Once the server answered, it has seen a single-use credential.
	return p == replaySafe && httpretry.RetryableStatus(at.Response.StatusCode)
}

// endpointClient posts form requests to the authorization server's endpoints
// (token, device authorization, revocation) through the shared retry engine
// with the replay policy of each request: no redirects, a total timeout,
// capped and jittered waits within a total budget, the last response passed
// through so the OAuth error body reaches the caller, and a redacting logger.
type endpointClient struct {
	rc      *httpretry.Engine // its HTTPClient follows no redirect and has no total timeout
	log     *slog.Logger
	timeout time.Duration // total per call, retries included
	now     func() time.Time
}

func newEndpointClient(hc *http.Client, log *slog.Logger, timeout, budget, waitMin, waitMax time.Duration, retryMax int) *endpointClient {
	inner := *hc
	// The token endpoint never redirects a client anywhere it should follow:
	// a redirect would carry codes, refresh tokens and client secrets to
	// another origin, so the 3xx itself comes back and becomes an error.
	inner.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	inner.Timeout = 0 // the total timeout is the call's context
	rc := &httpretry.Engine{
		HTTPClient: &inner,
		MaxRetries: retryMax,
		WaitMin:    waitMin,
		WaitMax:    waitMax,
		Budget:     budget,
		Logger:     log,
		LogPrefix:  "client: authorization server: ",
	}
	return &endpointClient{rc: rc, log: log, timeout: timeout, now: time.Now}
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
	start := c.now()

	build := func() ([]byte, http.Header, error) {
		f := cloneValues(form)
		h := http.Header{}
		if err := auth.apply(f, h); err != nil {
			return nil, nil, err
		}
		return []byte(f.Encode()), h, nil
	}
	// The first body is built before anything is sent, so that a client
	// authentication that cannot be built fails the call as it is. Its
	// headers serve every attempt: only client_secret_basic sets one, and
	// it does not change between attempts.
	first, header, err := build()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, &EndpointError{Endpoint: ep, Err: fmt.Errorf("client: %w: bad endpoint URL", ErrInvalidConfig)}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var buildErr error
	body := func() (io.Reader, error) {
		b := first
		first = nil
		if b == nil {
			if b, _, buildErr = build(); buildErr != nil {
				return nil, buildErr
			}
		}
		return bytes.NewReader(b), nil
	}

	sent := c.now()
	res, err := c.rc.Do(req, body, policy.allows)
	if err != nil {
		if buildErr != nil {
			return nil, buildErr
		}
		return nil, c.transportError(parent, ep, start, res.Attempts, err)
	}
	resp := res.Response
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	if err != nil {
		return nil, c.transportError(parent, ep, start, res.Attempts, err)
	}
	if len(data) > oauthwire.MaxBody {
		return nil, &EndpointError{Endpoint: ep, Status: resp.StatusCode, Err: fmt.Errorf("%w: response body larger than %d bytes", ErrBadResponse, oauthwire.MaxBody)}
	}
	if res.Attempts > 1 {
		c.log.LogAttrs(ctx, slog.LevelDebug, "client: endpoint answered after retries",
			slog.String("endpoint", ep), slog.Int("attempts", res.Attempts), slog.Int("status", resp.StatusCode))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &EndpointError{Endpoint: ep, Status: resp.StatusCode,
			Err: fmt.Errorf("%w: endpoint answered %d with a redirect, which tokenward never follows", ErrBadResponse, resp.StatusCode)}
	}
	hint, hasHint := httpretry.ParseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	if res.RetryAfter > 0 {
		// The hint that ended the retries, as the engine read it.
		hint, hasHint = res.RetryAfter, true
	}
	if resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode == http.StatusServiceUnavailable && hasHint) {
		// The server said when to come back: a typed error with its hint,
		// whether or not this request could be retried, so that the caller
		// waits as asked instead of hammering it.
		code := oauthwire.ParseErrorResponse(resp.StatusCode, resp.Header, data).Code
		return nil, &RateLimitError{Endpoint: ep, Status: resp.StatusCode, RetryAfter: hint, Code: code, Attempts: res.Attempts}
	}
	// Expiry is computed from when the call started: never later than the
	// server's own clock would put it.
	return &response{status: resp.StatusCode, header: resp.Header, body: data, sent: sent}, nil
}

// transportError classifies a failure that produced no usable response.
func (c *endpointClient) transportError(parent context.Context, ep string, start time.Time, attempts int, err error) error {
	if perr := parent.Err(); perr != nil {
		// The caller's own deadline or cancellation, not the endpoint's
		// timeout: keep context.DeadlineExceeded / Canceled in the chain.
		return &EndpointError{Endpoint: ep, Err: fmt.Errorf("the caller's context ended after %d attempt(s): %w", attempts, perr)}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &EndpointError{Endpoint: ep, Err: fmt.Errorf("%w (after %s, %d attempt(s)): %w", ErrTokenEndpointTimeout, c.now().Sub(start).Round(time.Millisecond), attempts, refresh.ErrNetwork)}
	case errors.Is(err, context.Canceled):
		return err
	}
	return &EndpointError{Endpoint: ep, Err: netCause(err)}
}

// netCause wraps a transport failure as ErrNetwork, keeping the cause in the
// chain (so callers can still tell a dial error from a reset) but with a
// message stripped of the request URL and redacted.
func netCause(err error) error {
	return &causeError{msg: refresh.ErrNetwork.Error() + ": " + redact.Truncate(httpretry.StripURL(err).Error(), 300), errs: []error{refresh.ErrNetwork, err}}
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

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
