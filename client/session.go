package client

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cli/browser"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// LoginOptions changes how [Client.Login] signs the user in. Login hands a
// zero LoginOptions (a browser login) to its option functions.
type LoginOptions struct {
	// Device uses the device authorization grant (RFC 8628) instead of the
	// browser: for headless machines, SSH sessions and devices without a
	// browser. The user approves on another device.
	Device bool
	// AuthParams are extra parameters of this login's authorization
	// request (the browser's, or the device authorization request with
	// Device): added to Options.AuthParams (or DeviceAuthParams), whose
	// values of the same name they replace; a name without values removes
	// the configured one. The parameters tokenward sets itself are refused
	// with ErrInvalidConfig, as in Options.AuthParams. See [WithAuthParam].
	AuthParams url.Values
}

// WithDevice sets [LoginOptions.Device]: c.Login(ctx, client.WithDevice()).
func WithDevice() func(*LoginOptions) { return func(o *LoginOptions) { o.Device = true } }

// show prints the authorization URL and opens the browser. The opener runs
// on its own goroutine: some (xdg-open with a text browser over SSH) block
// until the browser exits, and the login must not wait for them.
func (o *LoginOptions) show(c *Client, authURL string) {
	fmt.Fprintf(c.prompt, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", authURL)
	open := c.cfg.OpenBrowser
	if open == nil {
		open = openSystemBrowser
	}
	log := c.grant.log
	go func() {
		if err := open(authURL); err != nil {
			log.Debug("client: could not open a browser", "error", redact.String(err.Error()))
		}
	}()
}

// errNoBrowser: the system browser could not be started; the URL printed
// on the prompt is the way left.
var errNoBrowser = errors.New("client: no browser could be opened")

var browserOutput sync.Once

// openSystemBrowser opens url with github.com/cli/browser, whose own output
// (the launched command's) is discarded.
func openSystemBrowser(u string) error {
	browserOutput.Do(func() { browser.Stdout, browser.Stderr = discardWriter{}, discardWriter{} })
	if err := browser.OpenURL(u); err != nil {
		return errors.Join(errNoBrowser, err)
	}
	return nil
}

type discardWriter struct{}

// Write discards p.
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func discardLog() *log.Logger { return log.New(discardWriter{}, "", 0) }

// derivedResources returns the handles of every resource token derived from
// the login: those of Options.Resources (with several, each has its own
// token; one may be stored by an earlier run) and those used through
// ForResource.
func (c *Client) derivedResources() []*Resource {
	if len(c.grant.cfg.Resources) > 1 {
		for _, r := range c.grant.cfg.Resources {
			if _, err := c.ForResource(r); err != nil {
				c.grant.log.Debug("client: resource not usable", "error", err)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Resource
	for id, r := range c.resources {
		if id != "\x00default" && r.cache != nil {
			out = append(out, r)
		}
	}
	return out
}

// Login signs the user in (GrantLogin): in the browser with PKCE on a
// loopback redirect, or with WithDevice through the device flow. The new
// tokens are saved to the store (and read back) and published before
// Login returns; then every token derived from the previous login (for the
// other resources, stored by this or an earlier run) is dropped, so no API
// is called as the previous user once Login has returned: the next request
// on another resource mints its token from the new login.
//
// Before it shows a code or opens a browser, Login checks that the store
// can save the tokens ([store.Store.CheckWrite]): a locked or unreachable
// keychain fails at once, with the store's error (store.ErrLocked,
// ErrStoreUnavailable, ...), instead of after the user has approved a
// login whose tokens could not be kept.
func (c *Client) Login(ctx context.Context, optFns ...func(*LoginOptions)) error {
	if c.static != nil {
		return failure(opLogin, "a fixed access token is configured (Options.AccessToken); there is nothing to log in to", ErrInvalidConfig)
	}
	if c.grant.cfg.Grant != GrantLogin {
		return failure(opLogin, "Login is for GrantLogin; client credentials need no login", ErrInvalidConfig)
	}
	def, err := c.defaultResource()
	if err != nil {
		return err
	}
	var o LoginOptions
	for _, f := range optFns {
		if f != nil {
			f(&o)
		}
	}
	if err := o.check(); err != nil {
		return err
	}
	if err := c.grant.store.CheckWrite(ctx); err != nil {
		return failure(opLogin, "the token store cannot save the new tokens, so no login was started: "+plain(err), err)
	}
	start := c.now()
	var tok *oauth2.Token
	if o.Device {
		tok, err = c.deviceLogin(ctx, &o)
	} else {
		tok, err = c.browserLogin(ctx, &o)
	}
	if err != nil {
		// The flows name their requests' operations ("device
		// authorization", "token request (authorization_code)"); the rest
		// (a cancelled context) is the login's.
		return inOp(opLogin, err)
	}
	// Publish the new login first, then drop the tokens derived from the
	// previous one. In the other order a request on another resource
	// between the two steps would mint a token with the previous login's
	// refresh token and store it after the drop, and the new user's calls
	// to that API would go out as the previous user. In this order a mint
	// in flight (started with the previous login) is waited for by Clear
	// and dropped, and any later one uses the new login.
	setErr := def.cache.Set(ctx, tok)
	if c.betweenLoginSteps != nil {
		c.betweenLoginSteps()
	}
	// Dropped even when Set failed: the derived tokens are then no use to
	// anyone (a failed Set leaves the previous login in place, which mints
	// them again when asked), and a user who signed in as someone else
	// must never be served the previous user's.
	c.dropDerivedTokens(ctx)
	if setErr != nil {
		if errors.Is(setErr, refresh.ErrPersistFailed) {
			// The tokens work in this process; saving is retried on use.
			c.grant.log.Warn("client: login succeeded but saving the tokens failed; retrying on next use", "error", setErr)
			err := failure(opLogin, "signed in, but the tokens could not be saved (retried on next use): "+plain(setErr), setErr)
			c.grant.emit(Event{Kind: EventLogin, Time: c.now(), Duration: c.now().Sub(start), Expiry: tok.Expiry, Err: err})
			return err
		}
		return inOp(opLogin, setErr)
	}
	c.grant.emit(Event{Kind: EventLogin, Time: c.now(), Duration: c.now().Sub(start), Expiry: tok.Expiry})
	return nil
}

// dropDerivedTokens clears the token of every resource derived from the
// login, in memory and in the store. Each Clear first waits for a mint in
// flight on its resource, so none outlives it.
func (c *Client) dropDerivedTokens(ctx context.Context) {
	for _, r := range c.derivedResources() {
		if err := r.cache.Clear(ctx); err != nil {
			c.grant.log.Warn("client: dropping a previous login's resource token failed", "error", err)
		}
	}
}

// logoutDeleteTimeout bounds the local delete of Logout, which runs even
// when the caller's context has ended (revocation may have used it up).
const logoutDeleteTimeout = 30 * time.Second

// Logout revokes the login at the server and deletes it locally: first the
// refresh token, then the access tokens (RFC 7009, when the server has a
// revocation endpoint), then every local entry of this client and profile:
// the default token's and those of Options.Resources and of every resource
// used through ForResource. The tokens revoked are the live ones (a refresh
// token whose save failed included). Revocation uses ctx; the local delete
// runs even after ctx has ended, bounded on its own, so a hanging
// revocation endpoint never keeps tokens on disk. The returned *LogoutError
// says which tokens the server may still honour and whether the local
// delete completed.
func (c *Client) Logout(ctx context.Context) error {
	if c.static != nil {
		return nil
	}
	def, err := c.defaultResource()
	if err != nil {
		return err
	}
	derived := c.derivedResources()

	// The live tokens, read before anything is deleted.
	type held struct {
		what string
		tok  *oauth2.Token
	}
	var tokens []held
	var notRevoked []string
	var errs []error
	xerr := def.cache.Exchange(ctx, func(_ context.Context, full *oauth2.Token) (*oauth2.Token, error) {
		cp := *full
		tokens = append(tokens, held{"access token", &cp})
		return nil, nil
	})
	switch {
	case xerr == nil, errors.Is(xerr, ErrReauthRequired):
	default:
		// The store could not be read: whatever it holds was not revoked.
		notRevoked = append(notRevoked, "the login's tokens (the store could not be read)")
		errs = append(errs, xerr)
	}
	for _, r := range derived {
		e, err := c.grant.store.Load(ctx, r.key.String())
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			notRevoked = append(notRevoked, "access token for "+redact.Terminal(redact.URLString(r.resources[0]))+" (the store could not be read)")
			errs = append(errs, err)
		default:
			tokens = append(tokens, held{"access token for " + redact.Terminal(redact.URLString(r.resources[0])), e.Token()})
		}
	}

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
			errs = append(errs, err)
		}
	}
	// The refresh token first: revoking it ends the whole grant on most
	// servers, so a failure later matters less.
	for _, h := range tokens {
		revoke(h.tok.RefreshToken, "refresh_token", "refresh token")
	}
	for _, h := range tokens {
		revoke(h.tok.AccessToken, "access_token", h.what)
	}
	if c.endpoints.RevocationURL == "" && len(tokens) > 0 {
		errs = append(errs, errNoRevocation)
	}

	delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logoutDeleteTimeout)
	defer cancel()
	deleted := true
	for _, r := range append([]*Resource{def}, derived...) {
		if err := r.cache.Clear(delCtx); err != nil {
			deleted = false
			errs = append(errs, err)
		}
	}
	c.grant.emit(Event{Kind: EventLogout, Time: c.now()})
	if len(notRevoked) == 0 && deleted && len(errs) == 0 {
		return nil
	}
	return &LogoutError{NotRevoked: dedupe(notRevoked), LocalDeleted: deleted, Err: errors.Join(errs...)}
}

// revoke sends one RFC 7009 revocation request. Revocation is idempotent,
// so it may be retried.
func (g *grant) revoke(ctx context.Context, tok, hint string) error {
	form := url.Values{"token": {tok}, "token_type_hint": {hint}}
	resp, err := g.ep.post(ctx, g.endpoints.RevocationURL, form, g.authFor(g.endpoints.RevocationURL), replaySafe)
	if err != nil {
		return inOp(opRevocation, err)
	}
	if resp.status == 200 {
		return nil
	}
	return g.classify(opRevocation, g.endpoints.RevocationURL, resp.status, oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body))
}

// errNoRevocation: the tokens could not be revoked, for want of an
// endpoint.
var errNoRevocation = errors.New("revocation: the server has no revocation endpoint")

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

// Status describes the login without revealing any secret. Its text
// fields are for display and can be printed as they are: what came from
// the server (Subject, Scopes) or from elsewhere has every character a
// terminal could act on (escape sequences, carriage returns, bidi
// overrides) shown escaped, as \x1b or \u202e.
type Status struct {
	// LoggedIn reports whether a usable refresh token (GrantLogin: stored
	// and not past its known expiry) or a current access token
	// (GrantClientCredentials, fixed token) is available.
	LoggedIn bool
	// Subject is the user the tokens belong to, when known (from the ID
	// token, unverified: for display only, never for a decision).
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
	// FixedToken reports that a token from Options.AccessToken (or
	// Options.AccessTokenEnv) is in use (nothing is stored or refreshed).
	FixedToken bool
	// Issuer and ClientID identify the client; Profile its account.
	Issuer, ClientID, Profile string
}

// Status reports the state of the login from the store, without refreshing
// anything or contacting the server.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	g := c.grant
	st := &Status{Issuer: redact.Terminal(redact.URLString(g.keyIssuer)), ClientID: redact.Terminal(g.cfg.ClientID), Profile: redact.Terminal(g.cfg.Profile)}
	if st.Profile == "" {
		st.Profile = "default"
	}
	if c.static != nil {
		st.FixedToken, st.LoggedIn = true, true
		st.Storage = store.Status{Backend: "none (fixed access token)"}
		return st, nil
	}
	def, err := c.defaultResource()
	if err != nil {
		return nil, err
	}
	st.Storage = g.store.Status()
	st.Storage.Backend = redact.Terminal(st.Storage.Backend)
	st.Storage.Location = redact.Terminal(st.Storage.Location)
	st.Storage.Warning = redact.Terminal(st.Storage.Warning)
	e, err := g.store.Load(ctx, def.key.String())
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, inOp(opStatus, err)
	}
	// Both come from the server: the subject from the ID token, the
	// scopes from the token response.
	st.Subject = redact.Terminal(e.Subject)
	for _, s := range strings.Fields(e.Scope) {
		st.Scopes = append(st.Scopes, redact.Terminal(s))
	}
	if e.AccessToken != "" {
		st.AccessTokenExpiry = e.Expiry
	}
	st.RefreshTokenExpiry = e.RefreshTokenExpiry
	st.HasRefreshToken = e.RefreshToken != ""
	now := c.now()
	if g.cfg.Grant == GrantLogin {
		st.LoggedIn = st.HasRefreshToken && (e.RefreshTokenExpiry.IsZero() || now.Before(e.RefreshTokenExpiry))
	} else {
		st.LoggedIn = e.AccessToken != "" && (e.Expiry.IsZero() || now.Before(e.Expiry))
	}
	return st, nil
}
