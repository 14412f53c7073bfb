package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// DeviceCode is what a user needs to approve a device login (RFC 8628): go
// to VerificationURI and enter UserCode, or open VerificationURIComplete
// (which carries the code), before Expiry. The user code is a short-lived
// credential: show it to the user, don't log it.
type DeviceCode struct {
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string // may be empty
	Expiry                  time.Time
}

// deviceLogin runs the device authorization grant (RFC 8628): one request
// for a device code, the code shown through Options.DevicePrompt, then one
// POST per poll at the server's interval: authorization_pending keeps
// polling, slow_down adds 5 s to the interval for good, a transient 5xx, 429
// or connection reset keeps polling, access_denied and expired_token end the
// flow with ErrAccessDenied and ErrLoginExpired, and polling stops at the
// code's expiry. A poll is never retried blindly: the device code is a
// credential, and a poll the server may have seen is not sent twice. Before
// anything is shown, the response is checked (see checkDeviceAuth).
func (c *Client) deviceLogin(ctx context.Context, o *LoginOptions) (*oauth2.Token, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	if c.endpoints.DeviceAuthURL == "" {
		return nil, failure(opLogin, "the server has no device authorization endpoint; use browser login", ErrInvalidConfig)
	}
	form := url.Values{}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	for _, r := range c.allResources() {
		form.Add("resource", r)
	}
	form = withParams(form, mergeParams(c.cfg.DeviceAuthParams, o.AuthParams))
	resp, err := c.ep.post(ctx, c.endpoints.DeviceAuthURL, form, c.authFor(c.endpoints.DeviceAuthURL), replaySafe)
	if err != nil {
		return nil, inOp(opDeviceAuth, err)
	}
	da, err := oauthwire.ParseDeviceAuthResponse(resp.status, resp.header, resp.body, resp.sent)
	if err != nil {
		return nil, c.classifyAuthz(opDeviceAuth, c.endpoints.DeviceAuthURL, resp.status, err)
	}
	if err := c.checkDeviceAuth(da); err != nil {
		return nil, c.classify(opDeviceAuth, c.endpoints.DeviceAuthURL, resp.status, err)
	}

	promptCtx, stopPrompt := context.WithCancel(ctx)
	var promptDone sync.WaitGroup
	promptDone.Add(1)
	go func() {
		defer promptDone.Done()
		c.devicePrompt(promptCtx, DeviceCode{
			UserCode:                da.UserCode,
			VerificationURI:         da.VerificationURI,
			VerificationURIComplete: da.VerificationURIComplete,
			Expiry:                  da.Expiry,
		})
	}()
	defer func() {
		stopPrompt()
		promptDone.Wait()
	}()

	deadline := time.NewTimer(time.Until(da.Expiry))
	defer deadline.Stop()
	interval := da.Interval
	poll := withParams(url.Values{"grant_type": {oauthwire.GrantTypeDeviceCode}, "device_code": {da.DeviceCode}}, c.cfg.TokenParams)
	var hk *heldKey
	if c.dpop != nil {
		if hk, err = c.newLoginKey(); err != nil {
			return nil, inOp(opLogin, err)
		}
	}
	op := opToken(oauthwire.GrantTypeDeviceCode)
	for {
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			wait.Stop()
			return nil, failure(opLogin, "the device code expired before the login was approved", ErrLoginExpired)
		case <-wait.C:
		}
		resp, err := c.postProof(ctx, c.endpoints.TokenURL, poll, replayNever, hk)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var rl *RateLimitError
			switch {
			case errors.As(err, &rl):
				interval += oauthwire.SlowDownIncrement
				continue
			case errors.Is(err, ErrNetwork):
				continue // a reset or timeout: the next poll asks again
			}
			return nil, inOp(op, err)
		}
		if resp.status >= 200 && resp.status < 300 {
			tok, err := c.parseToken(op, resp)
			if err == nil {
				bindKey(tok, hk)
			}
			return tok, err
		}
		e := oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body)
		switch oauthwire.ClassifyDevicePoll(e) {
		case oauthwire.DevicePollPending, oauthwire.DevicePollTransient:
		case oauthwire.DevicePollSlowDown:
			interval += oauthwire.SlowDownIncrement
		case oauthwire.DevicePollDenied:
			ae := newAuthorizationError(e.Code, e.Description, c.cfg.ClientSecret)
			return nil, failure(opLogin, "access denied: the device login was refused", ae)
		case oauthwire.DevicePollExpired:
			return nil, failure(opLogin, "the device code expired before the login was approved", ErrLoginExpired)
		default:
			if ae := newAuthorizationError(e.Code, e.Description, c.cfg.ClientSecret); ae != nil {
				return nil, authorizationFailure(opLogin, ae, nil)
			}
			return nil, c.classify(op, c.endpoints.TokenURL, resp.status, e)
		}
	}
}

// maxUserCode is the longest user code accepted, in characters. RFC 8628
// recommends codes short enough to type (8 characters or so); 64 leaves
// room for any real server and keeps a hostile one from filling the screen.
const maxUserCode = 64

// checkDeviceAuth refuses a device authorization response that would show
// the user something unsafe: a user code that is too long or holds
// characters nobody can type (controls, bidi overrides, zero-width
// characters), or a verification address that holds such characters or is
// not https (loopback http aside, with Options.AllowInsecureLoopback). The
// user signs in on that page, password included: over plain http anyone
// on the network could read or change it, so such an address is refused
// rather than shown with a warning. The errors name the field, never its
// value (the user code and the complete address are credentials).
func (c *Client) checkDeviceAuth(da *oauthwire.DeviceAuth) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{oauthwire.ErrInvalidDeviceResponse}, a...)...)
	}
	switch n := utf8.RuneCountInString(da.UserCode); {
	case !utf8.ValidString(da.UserCode):
		return bad("user_code is not valid UTF-8")
	case n > maxUserCode:
		return bad("user_code has %d characters, more than %d", n, maxUserCode)
	case redact.Terminal(da.UserCode) != da.UserCode:
		return bad("user_code holds control or invisible characters")
	}
	for _, f := range []struct{ name, uri string }{
		{"verification_uri", da.VerificationURI},
		{"verification_uri_complete", da.VerificationURIComplete},
	} {
		if f.uri == "" {
			continue
		}
		if err := oauthwire.CheckSecureURL(f.uri, c.cfg.AllowInsecureLoopback); err != nil {
			return bad("%s: %w", f.name, err)
		}
		if redact.Terminal(f.uri) != f.uri {
			return bad("%s holds control or invisible characters", f.name)
		}
	}
	return nil
}
