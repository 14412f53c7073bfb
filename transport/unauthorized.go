package transport

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
)

// rejected handles a 401 answer to req, which was sent with av (see "401"
// in the documentation of RoundTrip). When the challenge of av's scheme
// says error="invalid_token" (or InvalidateOnAny401 is set) it invalidates
// exactly av's token and, if the body can be replayed and the source now
// hands out another usable token, drains and closes resp and returns the
// answer to one resend. Otherwise it returns resp as it is: a resend with
// the same token, or without the body, could not succeed.
func (c *config) rejected(req *http.Request, org *origin, av *authValue, resp *http.Response) (*http.Response, error) {
	ctx := req.Context()
	code := ""
	if ch, ok := findChallenge(resp.Header, av.scheme); ok {
		code = ch.Param("error")
	}
	if code != ErrorCodeInvalidToken && !c.any401 {
		return resp, nil
	}
	invalidated := false
	switch {
	case c.fb != nil:
		invalidated = c.fb.Rejected(org.name, av.tok)
	case c.inv != nil:
		invalidated = c.inv.Invalidate(av.tok)
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	c.log.LogAttrs(ctx, slog.LevelInfo, "transport: token rejected by resource server",
		slog.String("method", req.Method), slog.Any("url", redact.URLValue{U: req.URL}),
		slog.String("challenge_error", redact.Truncate(code, 64)),
		slog.Bool("invalidated", invalidated), slog.Bool("replayable", replayable))
	if !replayable {
		c.log.LogAttrs(ctx, slog.LevelDebug, "transport: not resending: request body cannot be replayed",
			slog.Any("url", redact.URLValue{U: req.URL}))
		return resp, nil
	}
	tok, err := c.src.Token(ctx)
	if err != nil || tok == nil || tok.AccessToken == "" {
		msg := "no token"
		if err != nil {
			msg = redact.String(err.Error())
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "transport: not resending: no fresh token",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", msg))
		return resp, nil
	}
	if tok == av.tok || tok.AccessToken == av.tok.AccessToken {
		c.log.LogAttrs(ctx, slog.LevelDebug, "transport: not resending: source returned the rejected token",
			slog.Any("url", redact.URLValue{U: req.URL}))
		return resp, nil
	}
	av2, err := c.authFor(tok)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "transport: not resending: fresh token not usable",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", err.Error()))
		return resp, nil
	}
	body, ok := c.replayBody(req)
	if !ok {
		return resp, nil
	}
	out, err := c.outgoing(req, av2, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "transport: not resending: prepare failed",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", redact.String(err.Error())))
		return resp, nil
	}
	drain(resp.Body)
	c.log.LogAttrs(ctx, slog.LevelInfo, "transport: resending once with a fresh token",
		slog.String("method", req.Method), slog.Any("url", redact.URLValue{U: req.URL}))
	resp2, err := c.send(out)
	if err == nil && c.answered != nil {
		resp2, err = c.answer(req, av2, resp2, false)
	}
	if err == nil {
		c.accepted(resp2, org, av2.tok)
	}
	return resp2, err
}

// replayBody returns a new copy of req's body for a resend (nil for a
// request without one), or false when it cannot be had.
func (c *config) replayBody(req *http.Request) (io.ReadCloser, bool) {
	switch {
	case req.Body == nil:
		return nil, true
	case req.Body == http.NoBody:
		return http.NoBody, true
	case req.GetBody == nil:
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		c.log.LogAttrs(req.Context(), slog.LevelWarn, "transport: not resending: GetBody failed",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", redact.String(err.Error())))
		return nil, false
	}
	return body, true
}

// answer runs the Answered hook on resp, the answer to req sent with av.
// When the hook asks for it, mayResend is true and resp is a 401 whose
// request can be replayed, it sends req once more with the same token and
// runs the hook on that answer too (without a further resend).
func (c *config) answer(req *http.Request, av *authValue, resp *http.Response, mayResend bool) (*http.Response, error) {
	resend, err := c.answered(req, resp, av.tok)
	if err != nil {
		drain(resp.Body)
		return nil, local(fmt.Errorf("transport: %w", err))
	}
	if !resend || !mayResend || resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	body, ok := c.replayBody(req)
	if !ok {
		c.log.LogAttrs(req.Context(), slog.LevelDebug, "transport: not resending: request body cannot be replayed",
			slog.Any("url", redact.URLValue{U: req.URL}))
		return resp, nil
	}
	out, err := c.outgoing(req, av, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		c.log.LogAttrs(req.Context(), slog.LevelWarn, "transport: not resending: prepare failed",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", redact.String(err.Error())))
		return resp, nil
	}
	drain(resp.Body)
	c.log.LogAttrs(req.Context(), slog.LevelInfo, "transport: resending once as the answer asked",
		slog.String("method", req.Method), slog.Any("url", redact.URLValue{U: req.URL}))
	resp2, err := c.send(out)
	if err != nil {
		return nil, err
	}
	return c.answer(req, av, resp2, false)
}

// drain reads a little of body, so that the connection can be reused, and
// closes it.
func drain(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	body.Close()
}

// accepted tells the source that tok works, when resp says so: any answer
// but 401 and 5xx (a server error says nothing about the token).
func (c *config) accepted(resp *http.Response, org *origin, tok *oauth2.Token) {
	if c.fb != nil && resp != nil && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode < 500 {
		c.fb.Accepted(org.name, tok)
	}
}
