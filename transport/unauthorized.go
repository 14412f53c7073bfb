package transport

import (
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
	var body io.ReadCloser
	switch {
	case req.Body == nil:
	case req.Body == http.NoBody:
		body = http.NoBody
	default:
		if body, err = req.GetBody(); err != nil {
			c.log.LogAttrs(ctx, slog.LevelWarn, "transport: not resending: GetBody failed",
				slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", redact.String(err.Error())))
			return resp, nil
		}
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
	if err == nil {
		c.accepted(resp2, org, av2.tok)
	}
	return resp2, err
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
