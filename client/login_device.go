package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mdp/qrterminal/v3"
	"golang.org/x/oauth2"
	"golang.org/x/term"

	"github.com/tokenward/tokenward/internal/oauthwire"
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
// for a device code, the code shown through Config.DevicePrompt, then one
// POST per poll at the server's interval: authorization_pending keeps
// polling, slow_down adds 5 s to the interval for good, a transient 5xx, 429
// or connection reset keeps polling, access_denied and expired_token end the
// flow with ErrAccessDenied and ErrLoginExpired, and polling stops at the
// code's expiry. A poll is never retried blindly (O-08, O-15).
func (c *Client) deviceLogin(ctx context.Context) (*oauth2.Token, error) {
	if c.endpoints.DeviceAuthURL == "" {
		return nil, fmt.Errorf("%w: the server has no device authorization endpoint; use browser login", ErrInvalidConfig)
	}
	form := url.Values{}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	for _, r := range c.allResources() {
		form.Add("resource", r)
	}
	resp, err := c.ep.post(ctx, c.endpoints.DeviceAuthURL, form, c.authFor(c.endpoints.DeviceAuthURL), replaySafe)
	if err != nil {
		return nil, err
	}
	da, err := oauthwire.ParseDeviceAuthResponse(resp.status, resp.header, resp.body, resp.sent)
	if err != nil {
		return nil, c.classify(c.endpoints.DeviceAuthURL, resp.status, err)
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
	poll := url.Values{"grant_type": {oauthwire.GrantTypeDeviceCode}, "device_code": {da.DeviceCode}}
	for {
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			wait.Stop()
			return nil, fmt.Errorf("%w: the device code expired before the login was approved", ErrLoginExpired)
		case <-wait.C:
		}
		resp, err := c.ep.post(ctx, c.endpoints.TokenURL, poll, c.authFor(c.endpoints.TokenURL), replayNever)
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
			return nil, err
		}
		if resp.status >= 200 && resp.status < 300 {
			return c.parseToken(resp)
		}
		e := oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body)
		switch oauthwire.ClassifyDevicePoll(e) {
		case oauthwire.DevicePollPending, oauthwire.DevicePollTransient:
		case oauthwire.DevicePollSlowDown:
			interval += oauthwire.SlowDownIncrement
		case oauthwire.DevicePollDenied:
			return nil, fmt.Errorf("%w: the device login was refused", ErrAccessDenied)
		case oauthwire.DevicePollExpired:
			return nil, fmt.Errorf("%w: the device code expired", ErrLoginExpired)
		default:
			return nil, c.classify(c.endpoints.TokenURL, resp.status, e)
		}
	}
}

// devicePrompt shows the code through Config.DevicePrompt, or as text with a
// QR code and a countdown on Config.Prompt.
func (c *Client) devicePrompt(ctx context.Context, d DeviceCode) {
	if c.cfg.DevicePrompt != nil {
		c.cfg.DevicePrompt(ctx, d)
		return
	}
	TextDevicePrompt(c.prompt)(ctx, d)
}

// TextDevicePrompt returns a DevicePrompt that writes the verification URL,
// the user code and (when the server sent verification_uri_complete) a QR
// code of it to w. When w is a terminal it also keeps a countdown line up to
// date until the login ends.
func TextDevicePrompt(w io.Writer) func(ctx context.Context, d DeviceCode) {
	return func(ctx context.Context, d DeviceCode) {
		showDeviceCode(ctx, w, d, isTerminal(w))
	}
}

// isTerminal reports whether w is a terminal, where a line can be redrawn
// in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showDeviceCode is TextDevicePrompt with the terminal check made: on a
// terminal (tty) it redraws a countdown every second until ctx ends;
// otherwise it writes the time left once and returns.
func showDeviceCode(ctx context.Context, w io.Writer, d DeviceCode, tty bool) {
	fmt.Fprintf(w, "To sign in, open %s and enter the code %s\n", d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" {
		fmt.Fprintf(w, "or scan this code to open %s:\n", d.VerificationURIComplete)
		qrterminal.GenerateWithConfig(d.VerificationURIComplete, qrterminal.Config{
			Level: qrterminal.L, Writer: w, HalfBlocks: true,
			BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
			WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE,
			QuietZone: 1,
		})
	}
	if !tty {
		fmt.Fprintf(w, "The code expires in %s.\n", time.Until(d.Expiry).Round(time.Second))
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		left := time.Until(d.Expiry)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(w, "\rWaiting for approval; the code expires in %s ", fmtCountdown(left))
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
	}
}

func fmtCountdown(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
