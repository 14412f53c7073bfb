package client

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/url"
	"strings"
	"time"

	"github.com/cli/browser"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// LoginOption changes how [Client.Login] signs the user in.
type LoginOption func(*loginOptions)

type loginOptions struct {
	device bool
}

// WithDevice makes Login use the device authorization grant (RFC 8628)
// instead of the browser: for headless machines, SSH sessions and devices
// without a browser. The user approves on another device.
func WithDevice() LoginOption { return func(o *loginOptions) { o.device = true } }

// show prints the authorization URL and opens the browser.
func (o *loginOptions) show(c *Client, authURL string) {
	fmt.Fprintf(c.prompt, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", authURL)
	open := c.cfg.OpenBrowser
	if open == nil {
		open = openSystemBrowser
	}
	if err := open(authURL); err != nil {
		c.log.Debug("client: could not open a browser", "error", redact.String(err.Error()))
	}
}

// openSystemBrowser opens url with github.com/cli/browser, whose own output
// (the launched command's) is discarded.
func openSystemBrowser(u string) error {
	browser.Stdout, browser.Stderr = discardWriter{}, discardWriter{}
	if err := browser.OpenURL(u); err != nil {
		return errors.Join(errNoBrowser, err)
	}
	return nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func discardLog() *log.Logger { return log.New(discardWriter{}, "", 0) }

// Login signs the user in (GrantLogin): in the browser with PKCE on a
// loopback redirect, or with WithDevice through the device flow. The new
// tokens are saved to the store (and read back) before Login returns, and
// every token of the previous login in this process is dropped.
func (c *Client) Login(ctx context.Context, opts ...LoginOption) error {
	if c.static != nil {
		return fmt.Errorf("%w: a fixed access token is configured (Config.AccessToken or %s); there is nothing to log in to", ErrInvalidConfig, EnvAccessToken)
	}
	if c.cfg.Grant != GrantLogin {
		return fmt.Errorf("%w: Login is for GrantLogin; client credentials need no login", ErrInvalidConfig)
	}
	var o loginOptions
	for _, f := range opts {
		f(&o)
	}
	start := c.now()
	var tok *oauth2.Token
	var err error
	if o.device {
		tok, err = c.deviceLogin(ctx)
	} else {
		tok, err = c.browserLogin(ctx, &o)
	}
	if err != nil {
		return err
	}
	def := c.defaultResource()
	// Tokens of other resources came from the previous login: drop them so
	// they are minted again from the new refresh token.
	c.mu.Lock()
	var others []*Resource
	for _, r := range c.resources {
		if r != def && r.cache != nil {
			others = append(others, r)
		}
	}
	c.mu.Unlock()
	for _, r := range others {
		if err := r.cache.Clear(ctx); err != nil {
			c.log.Warn("client: dropping a previous login's resource token failed", "error", err)
		}
	}
	if err := def.cache.Set(ctx, tok); err != nil {
		if errors.Is(err, refresh.ErrPersistFailed) {
			// The tokens work in this process; saving is retried on use.
			c.log.Warn("client: login succeeded but saving the tokens failed; retrying on next use", "error", err)
			c.emit(Event{Kind: EventLogin, Time: c.now(), Duration: c.now().Sub(start), Expiry: tok.Expiry, Err: err})
			return err
		}
		return fmt.Errorf("client: login: %w", err)
	}
	c.emit(Event{Kind: EventLogin, Time: c.now(), Duration: c.now().Sub(start), Expiry: tok.Expiry})
	return nil
}

// Logout revokes the login at the server and deletes it locally: first the
// refresh token, then the access tokens (RFC 7009, when the server has a
// revocation endpoint), then every local entry of this client and profile:
// the default token's and those of Config.Resources and of every resource
// used through ForResource.
// The local delete happens even when revocation fails; the returned
// *LogoutError then says which tokens the server may still honour.
func (c *Client) Logout(ctx context.Context) error {
	if c.static != nil {
		return nil
	}
	if len(c.cfg.Resources) > 1 {
		// Each configured resource may have a token stored by an earlier
		// run: make sure every one is revoked and deleted too.
		for _, r := range c.cfg.Resources {
			if _, err := c.ForResource(r); err != nil {
				c.log.Debug("client: logout: resource not usable", "error", err)
			}
		}
	}
	c.mu.Lock()
	rs := make([]*Resource, 0, len(c.resources))
	for _, r := range c.resources {
		rs = append(rs, r)
	}
	c.mu.Unlock()
	def := c.defaultResource()

	// Collect what is stored (full tokens, with the refresh token) before
	// anything is deleted.
	type stored struct {
		what string
		e    *store.Entry
	}
	var entries []stored
	var loadErrs []error
	for _, r := range rs {
		e, err := c.store.Load(ctx, r.key.String())
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			loadErrs = append(loadErrs, err)
		default:
			what := "access token"
			if r != def && len(r.resources) > 0 {
				what = "access token for " + redact.URLString(r.resources[0])
			}
			if r == def {
				entries = append([]stored{{what, e}}, entries...) // default first: it holds the refresh token
			} else {
				entries = append(entries, stored{what, e})
			}
		}
	}

	var notRevoked []string
	var revokeErrs []error
	revoke := func(tok, hint, what string) {
		if tok == "" {
			return
		}
		if c.endpoints.RevocationURL == "" {
			notRevoked = append(notRevoked, what)
			return
		}
		if err := c.revoke(ctx, tok, hint); err != nil {
			notRevoked = append(notRevoked, what)
			revokeErrs = append(revokeErrs, err)
		}
	}
	// The refresh token first: revoking it ends the whole grant on most
	// servers, so a failure later matters less.
	for _, s := range entries {
		revoke(s.e.RefreshToken, "refresh_token", "refresh token")
	}
	for _, s := range entries {
		revoke(s.e.AccessToken, "access_token", s.what)
	}

	var delErrs []error
	for _, r := range rs {
		if r.cache == nil {
			continue
		}
		if err := r.cache.Clear(ctx); err != nil {
			delErrs = append(delErrs, err)
		}
	}
	if c.endpoints.RevocationURL == "" && len(notRevoked) > 0 {
		revokeErrs = append(revokeErrs, errors.New("client: the server has no revocation endpoint"))
	}
	deleted := len(delErrs) == 0 && len(loadErrs) == 0
	c.emit(Event{Kind: EventLogout, Time: c.now()})
	if len(notRevoked) == 0 && deleted {
		return nil
	}
	return &LogoutError{NotRevoked: dedupe(notRevoked), LocalDeleted: deleted, Err: errors.Join(append(append(revokeErrs, loadErrs...), delErrs...)...)}
}

// revoke sends one RFC 7009 revocation request. Revocation is idempotent,
// so it may be retried.
func (c *Client) revoke(ctx context.Context, tok, hint string) error {
	form := url.Values{"token": {tok}, "token_type_hint": {hint}}
	resp, err := c.ep.post(ctx, c.endpoints.RevocationURL, form, c.authFor(c.endpoints.RevocationURL), replaySafe)
	if err != nil {
		return err
	}
	if resp.status == 200 {
		return nil
	}
	return c.classify(c.endpoints.RevocationURL, resp.status, errorFromResponse(resp))
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// Status describes the login without revealing any secret.
type Status struct {
	// LoggedIn reports whether a refresh token (GrantLogin) or a current
	// access token (GrantClientCredentials, fixed token) is available.
	LoggedIn bool
	// Subject is the user the tokens belong to, when known (from the ID
	// token, unverified: for display only).
	Subject string
	// Scopes granted, when the server said.
	Scopes []string
	// AccessTokenExpiry and RefreshTokenExpiry are zero when unknown.
	AccessTokenExpiry  time.Time
	RefreshTokenExpiry time.Time
	// HasRefreshToken reports whether a refresh token is stored.
	HasRefreshToken bool
	// Storage says where tokens live; its Warning is set for insecure modes.
	Storage store.Status
	// FixedToken reports that a token from Config.AccessToken or
	// TOKENWARD_ACCESS_TOKEN is in use (nothing is stored or refreshed).
	FixedToken bool
	// Issuer and ClientID identify the client; Profile its account.
	Issuer, ClientID, Profile string
}

// Status reports the state of the login from the store, without refreshing
// anything or contacting the server.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	st := &Status{Issuer: redact.URLString(c.issuer), ClientID: c.cfg.ClientID, Profile: c.cfg.Profile}
	if st.Profile == "" {
		st.Profile = "default"
	}
	if c.static != nil {
		st.FixedToken, st.LoggedIn = true, true
		st.Storage = store.Status{Backend: "none (fixed access token)"}
		return st, nil
	}
	st.Storage = c.store.Status()
	e, err := c.store.Load(ctx, c.defaultResource().key.String())
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("client: status: %w", err)
	}
	st.Subject = e.Subject
	if e.Scope != "" {
		st.Scopes = strings.Fields(e.Scope)
	}
	st.AccessTokenExpiry = e.Expiry
	st.RefreshTokenExpiry = e.RefreshTokenExpiry
	st.HasRefreshToken = e.RefreshToken != ""
	if c.cfg.Grant == GrantLogin {
		st.LoggedIn = st.HasRefreshToken
	} else {
		st.LoggedIn = e.Expiry.IsZero() || c.now().Before(e.Expiry)
	}
	return st, nil
}
