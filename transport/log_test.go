package transport_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/transport"
)

// syncBuffer captures log output for canary scans.
type syncBuffer = canary.Log

// Canary secrets (tokens, secret query parameters, Cookie, Set-Cookie,
// Proxy-Authorization and DPoP headers, secrets in errors) never reach a
// log handler, at any level, through the transport or the retry client;
// nor do they appear in returned errors. Logs are read by more people and
// kept longer than tokens live.
func TestLogsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	var (
		queryAT     = canary.New("query-at")
		queryPlain  = canary.New("query-q") // not a secret parameter name: dropped with the whole query
		fragment    = canary.New("fragment")
		userinfo    = canary.New("userinfo")
		cookie      = canary.New("cookie")
		setCookie   = canary.New("set-cookie")
		proxyAuth   = canary.New("proxy")
		dpop        = canary.JWT("dpop", 0)
		custom      = canary.New("custom-header")
		srcErrJWT   = canary.JWT("err", 0)
		description = canary.New("description")
	)
	src := newFakeSource() // its tokens are JWT canaries
	tok1 := src.current(t)
	opaque := &oauth2.Token{AccessToken: canary.New("opaque-at"), TokenType: "bearer"}

	// A base that rejects tok1 (echoing secrets back in its challenge and
	// cookies), fails for one path and answers the rest.
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		switch {
		case r.URL.Path == "/neterr":
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		case r.URL.Path == "/503":
			return respond(r, 503, http.Header{"Set-Cookie": {"s=" + setCookie}}, ""), nil
		case r.Header.Get("Authorization") == "Bearer "+tok1.AccessToken || r.URL.Path == "/always401":
			h := http.Header{"Set-Cookie": {"session=" + setCookie}}
			h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", error_description="token %s (%s) expired"`, r.Header.Get("Authorization"), description))
			return respond(r, 401, h, ""), nil
		}
		return respond(r, 200, http.Header{"Set-Cookie": {"s=" + setCookie}}, ""), nil
	})

	var text, js syncBuffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug - 8} // everything, below debug too
	logger := slog.New(multiHandler{slog.NewTextHandler(&text, opts), slog.NewJSONHandler(&js, opts)})

	newTr := func(src transport.Source, opt func(*transport.Options)) *transport.Transport {
		return mustNew(t, src, toAPI(base), func(tr *transport.Options) {
			tr.Logger = logger
			if opt != nil {
				opt(tr)
			}
		})
	}
	tr := newTr(src, nil)
	strict := newTr(src, func(tr *transport.Options) { tr.RejectOtherOrigins = true })
	failing := newTr(transport.SourceFunc(func(context.Context) (*oauth2.Token, error) {
		return nil, errors.New("refresh: token endpoint said: Bearer " + srcErrJWT)
	}), nil)
	dpopTok := newTr(transport.SourceFunc(func(context.Context) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: opaque.AccessToken, TokenType: "DPoP"}, nil
	}), nil)
	opaqueTr := newTr(transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return opaque, nil }),
		func(tr *transport.Options) { tr.InvalidateOnAny401 = true })
	retry := transport.NewRetryClient(tr, retryOpts(transport.RetryOptions{MaxRetries: 1, WaitMin: 1, WaitMax: 1, Logger: logger}))

	secretURL := func(host, path string) string {
		return "https://" + url.UserPassword("me", userinfo).String() + "@" + host + path +
			"?access_token=" + queryAT + "&q=" + queryPlain + "#" + fragment
	}
	var errs []error
	do := func(rt any, method, u string, replayable bool) {
		var copies []*readCloseCounter
		req, _ := bodyRequest(t, method, u, "body", replayable, &copies)
		req.Header.Set("Cookie", "c="+cookie)
		req.Header.Set("Proxy-Authorization", "Basic "+proxyAuth)
		req.Header.Set("DPoP", dpop)
		req.Header.Set("X-Custom", custom)
		var resp *http.Response
		var err error
		switch rt := rt.(type) {
		case *http.Client:
			resp, err = rt.Do(req)
		case http.RoundTripper:
			resp, err = rt.RoundTrip(req)
		}
		if err != nil {
			errs = append(errs, err)
			return
		}
		resp.Body.Close()
	}
	do(tr, "GET", secretURL("api.example.com", "/ok"), true)              // success
	do(tr, "POST", secretURL("api.example.com", "/items"), true)          // 401 invalid_token -> invalidate, resend
	do(tr, "POST", secretURL("api.example.com", "/always401"), false)     // 401, not replayable
	do(tr, "GET", secretURL("other.example.com", "/x"), false)            // other origin: debug line
	do(strict, "GET", secretURL("other.example.com", "/x"), false)        // refused origin: warn + error
	do(failing, "GET", secretURL("api.example.com", "/x"), false)         // token source failure: warn + error
	do(dpopTok, "GET", secretURL("api.example.com", "/x"), false)         // unsupported type: error
	do(opaqueTr, "GET", secretURL("api.example.com", "/always401"), true) // opaque token echoed in a challenge
	do(retry, "GET", secretURL("api.example.com", "/503"), true)          // retry client: retrying
	do(retry, "GET", secretURL("api.example.com", "/neterr"), true)       // retry client: request failed

	secrets := append(src.secrets(), opaque.AccessToken, queryAT, queryPlain, fragment, userinfo, cookie,
		setCookie, proxyAuth, dpop, custom, srcErrJWT, description)
	out := text.String() + js.String()

	// The test must be able to fail: the canaries are findable, and the
	// scenarios did log at every level.
	if len(canary.Find("Authorization: Bearer "+tok1.AccessToken, tok1.AccessToken)) != 1 {
		t.Fatal("canary.Find cannot find a canary")
	}
	for _, level := range []string{"level=DEBUG", "level=INFO", "level=WARN", "level=ERROR"} {
		if !strings.Contains(text.String(), level) {
			t.Errorf("no %s line: the scenarios do not exercise every level", level)
		}
	}
	for _, msg := range []string{"token rejected", "resending", "sending without token", "request refused", "no token", "not usable", "retry: retrying", "retry: request failed"} {
		if !strings.Contains(out, msg) {
			t.Errorf("no log line containing %q", msg)
		}
	}
	if found := canary.Find(out, secrets...); len(found) > 0 {
		t.Errorf("log output contains %d secrets:\n%s", len(found), out)
	}
	for _, err := range errs {
		s := fmt.Sprintf("%v %+v", err, err)
		// The outer *url.Error from net/http's Client carries the request URL as
		// the caller wrote it; that is the caller's own string, not something the
		// transport added. Check what lies beneath it.
		var ue *url.Error
		if errors.As(err, &ue) {
			s = fmt.Sprintf("%v %+v", ue.Err, ue.Err)
		}
		// A token source's own error text is its responsibility (refresh
		// redacts); this one deliberately carries a canary, so skip it.
		if strings.Contains(s, "token endpoint said") {
			continue
		}
		if found := canary.Find(s, secrets...); len(found) > 0 {
			t.Errorf("error %q contains secrets", s)
		}
	}
}

// multiHandler sends each record to several handlers.
type multiHandler []slog.Handler

func (m multiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range m {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (m multiHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range m {
		if err := h.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}

func (m multiHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (m multiHandler) WithGroup(name string) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithGroup(name)
	}
	return out
}
