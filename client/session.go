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
	// IfNeeded makes Login return at once, without a prompt or a request,
	// when the user is already logged in ([Client.LoggedIn]): the start of a
	// program that logs in only the first time.
	IfNeeded bool
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

// IfNeeded sets [LoginOptions.IfNeeded]: the idiom of a program that logs
// in only when it has no usable login,
//
//	if err := c.Login(ctx, client.IfNeeded()); err != nil {
//		return err
//	}
//
// A stored refresh token the server has since revoked is found out at the
// first API call, which then fails with ErrReauthRequired: log in again
// (without IfNeeded).
func IfNeeded() func(*LoginOptions) { return func(o *LoginOptions) { o.IfNeeded = true } }

// LoggedIn reports whether a usable login is stored (Status.LoggedIn): a
// refresh token not past its known expiry, or, for client credentials and a
// fixed token, a current access token. It reads the store only; it never
// refreshes or contacts the server.
func (c *Client) LoggedIn(ctx context.Context) (bool, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return false, err
	}
	return st.LoggedIn, nil
}

// show prints the authorization URL and opens the browser. The opener runs
// on its own goroutine: some (xdg-open with a text browser over SSH) block
// until the browser exits, and the login must not wait for them.
func (o *LoginOptions) show(c *Client, authURL string, validFor time.Duration) {
	fmt.Fprintf(c.prompt, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", authURL)
	if validFor > 0 {
		// A pushed request's address expires; the sign-in it starts
		// does not, so only its opening is bounded.
		fmt.Fprintf(c.prompt, "The address works for %s: open it before then, or sign in again.\n\n", validFor)
	}
	open := c.cfg.OpenBrowser
	if open == nil {
		open = OpenSystemBrowser
	}
	log := c.grant.log
	go func() {
		if err := open(authURL); err != nil {
			log.Warn("client: could not open a browser; the address is on the prompt", "error", redact.String(err.Error()))
		}
	}()
}

// ErrNoBrowser: the system browser could not be started (no desktop, no
// xdg-open); the address printed on the prompt is the way left.
var ErrNoBrowser = errors.New("client: no browser could be opened")

var browserOutput sync.Once

// OpenSystemBrowser opens url in the system browser (through
// github.com/cli/browser, whose launched command's output is discarded). It
// is what Login uses when Options.OpenBrowser is nil; an application wraps
// it to react when no browser starts, for example to suggest the device
// flow:
//
//	o.OpenBrowser = func(u string) error {
//		err := client.OpenSystemBrowser(u)
//		if err != nil {
//			fmt.Fprintln(os.Stderr, "no browser: open the address above, or use --device")
//		}
//		return err
//	}
//
// Its errors match ErrNoBrowser. It may return before the browser has
// shown the page, or only once the browser exits (a text browser over SSH):
// Login calls it on a goroutine of its own and never waits for it.
func OpenSystemBrowser(url string) error {
	browserOutput.Do(func() { browser.Stdout, browser.Stderr = discardWriter{}, discardWriter{} })
	if err := browser.OpenURL(url); err != nil {
		return errors.Join(ErrNoBrowser, err)
	}
	return nil
}

type discardWriter struct{}

// Write discards p.
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func discardLog() *log.Logger { return log.New(discardWriter{}, "", 0) }

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
	if o.IfNeeded {
		in, err := c.LoggedIn(ctx)
		if err != nil {
			return inOp(opLogin, err)
		}
		if in {
			return nil
		}
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

// Status describes the login without revealing any secret. Its text
// fields are for display and can be printed as they are: what came from
// the server (Subject, Scopes) or from elsewhere has every character a
// terminal could act on (escape sequences, carriage returns, bidi
// overrides) shown escaped, as \x1b or \u202e.
type Status struct {
	// LoggedIn reports whether a usable refresh token (GrantLogin: stored
	// and not past its known expiry; without one, a current access token)
	// or a current access token (GrantClientCredentials, fixed token) is
	// available.
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
	usableAT := e.AccessToken != "" && (e.Expiry.IsZero() || now.Before(e.Expiry))
	if g.cfg.Grant == GrantLogin {
		// A login without a refresh token (some servers issue none) lasts
		// as long as its access token.
		usableRT := st.HasRefreshToken && (e.RefreshTokenExpiry.IsZero() || now.Before(e.RefreshTokenExpiry))
		st.LoggedIn = usableRT || (!st.HasRefreshToken && usableAT)
	} else {
		st.LoggedIn = usableAT
	}
	return st, nil
}
