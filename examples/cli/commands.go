package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/tokenward/tokenward/client"
)

// doLogin signs in, unless a login is stored and --force is not given.
func (a *app) doLogin() int {
	if st, err := a.c.Status(a.ctx); err == nil && st.FixedToken {
		return a.report("TOKENWARD_ACCESS_TOKEN is set: its fixed token is used, and there is no login to make",
			advice{text: "unset TOKENWARD_ACCESS_TOKEN to sign in, then run:", run: &a.line}, 2)
	}
	var opts []func(*client.LoginOptions)
	if a.login.device {
		opts = append(opts, client.WithDevice())
	}
	if !a.login.force {
		// A stored login is kept: signing in again would cost the user a
		// trip to the browser for nothing.
		opts = append(opts, client.IfNeeded())
	}
	for _, p := range a.login.params {
		// The client refuses the parameters it sets itself (state,
		// redirect_uri, ...): the error names the one, and the hint
		// drops it.
		opts = append(opts, client.WithAuthParam(p.key, p.value))
	}
	if err := a.c.Login(a.ctx, opts...); err != nil {
		if !a.login.device && errors.Is(err, client.ErrLoginExpired) && a.ctx.Err() == nil {
			return a.loginExpired()
		}
		return a.fail(err)
	}
	st, err := a.c.Status(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	if !a.loginDone.Load() {
		fmt.Fprintf(a.stdout, "already %s (profile %s); use --force to sign in again\n", signedIn(st), st.Profile)
		return 0
	}
	fmt.Fprintln(a.stdout, signedIn(st))
	if !st.Storage.Persistent {
		fmt.Fprintln(a.stderr, "WARNING: the tokens are kept in memory only (store: memory): this login lasts only for this process\n"+
			"and is forgotten when cli exits, so the next command will not be signed in. To stay signed in,\n"+
			"use the OS keychain (the default) or --store encrypted-file with TOKENWARD_PASSPHRASE.")
	}
	return 0
}

// signedIn says who is signed in: "signed in as grace". The subject comes
// from the server, escaped by the client.
func signedIn(st *client.Status) string {
	if st.Subject == "" {
		return "signed in"
	}
	return "signed in as " + st.Subject
}

// doStatus prints the state of the login.
func (a *app) doStatus() int {
	st, err := a.c.Status(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	printStatus(a.stdout, st, a.line.command("login", nil), a.cfg.APIOrigins)
	return 0
}

// doLogout revokes the login at the server and deletes it here, and says
// what it did, claiming nothing it did not do.
func (a *app) doLogout() int {
	if st, err := a.c.Status(a.ctx); err == nil && st.FixedToken {
		fmt.Fprintln(a.stdout, "using a fixed access token from TOKENWARD_ACCESS_TOKEN: there is no login to revoke or delete; unset the variable to stop using it")
		return 0
	}
	res, err := a.c.Logout(a.ctx)
	if err != nil {
		var le *client.LogoutError
		if errors.As(err, &le) && le.LocalDeleted {
			if le.Result != nil {
				printRevoked(a.stdout, le.Result)
			}
			return a.report(err.Error(), advice{text: "you are signed out here, but the server may still honour: " + strings.Join(le.NotRevoked, ", ") +
				", each until it expires; to end that sooner, revoke this app's access in your account's settings at the authorization server"}, 1)
		}
		return a.fail(err)
	}
	printLogout(a.stdout, res)
	return 0
}

// doCall GETs target with the access token and copies the answer to
// stdout. A path is resolved against the API; the token goes only to the
// API's origins.
func (a *app) doCall(arg string) int {
	target, err := url.Parse(arg)
	if err != nil {
		return a.report("bad URL: "+printable(err.Error()), advice{text: "give a full URL, such as https://api.example.com/things, or a path of the API, such as /things"}, 2)
	}
	if target.Scheme == "" && target.Host == "" {
		base, why := a.apiBase()
		if base == nil {
			return a.report(fmt.Sprintf("%q is not a full URL, and %s", printable(arg), why),
				advice{text: "give the full URL, such as https://api.example.com" + printable(target.EscapedPath()) + ", or name the API with --resource:",
					run: ptr(a.line.with("resource", "https://api.example.com"))}, 2)
		}
		target = base.ResolveReference(target)
		fmt.Fprintln(a.stderr, "GET", printable(target.String()))
	}
	// The token goes only to the origins the user configured, never to
	// whatever URL was typed: refuse the call rather than send it without.
	origin := target.Scheme + "://" + target.Host
	if !allowed(origin, a.cfg.APIOrigins) {
		return a.notAnOrigin(printable(origin))
	}
	hc, err := a.c.HTTPClient(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	if _, err := a.c.Token(a.ctx); err != nil {
		return a.fail(err)
	}
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return a.report("bad URL: "+printable(err.Error()), advice{text: "give a full URL, such as https://api.example.com/things"}, 2)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return a.fail(escaped{err})
	}
	defer resp.Body.Close()
	// The status line's reason phrase is the API's own text, which does not
	// come through the client: escaped here. The body is the output the
	// user asked for and is copied as it is, as curl does.
	fmt.Fprintf(a.stderr, "%s %s\n", printable(resp.Proto), printable(resp.Status))
	if _, err := io.Copy(a.stdout, io.LimitReader(resp.Body, 10<<20)); err != nil {
		return a.fail(escaped{err})
	}
	if resp.StatusCode == http.StatusUnauthorized {
		fmt.Fprintln(a.stdout)
		if a.cfg.AccessToken != "" || os.Getenv("TOKENWARD_ACCESS_TOKEN") != "" {
			return a.report("the API did not accept the token from TOKENWARD_ACCESS_TOKEN", advice{text: "replace it with a current token for this API, or unset it to use the stored login"}, 1)
		}
		login := a.line.command("login", []typedFlag{{"force", "true"}})
		return a.report("the API did not accept the token, even after a refresh", advice{text: "the token may be meant for another API (check --resource and --scopes), or the login was revoked; sign in again with:", run: &login}, 1)
	}
	if resp.StatusCode >= 400 {
		return 1
	}
	return 0
}

// apiBase returns the URL a path given to call is resolved against: the
// resource, or the one API origin, taken as a directory (so that "things"
// under https://api.example/v1 is https://api.example/v1/things). When
// there is none, it says why.
func (a *app) apiBase() (*url.URL, string) {
	base := a.set.resource
	if base == "" {
		switch o := a.cfg.APIOrigins; len(o) {
		case 0:
			return nil, "no API is configured (--resource or --api-origin) to resolve it against"
		case 1:
			base = o[0]
		default:
			return nil, "several API origins are configured (" + strings.Join(o, ", ") + "), so it is unclear which one is meant"
		}
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, "the API " + printable(base) + " is not a full URL"
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, ""
}

// notAnOrigin refuses a call to origin, and suggests the user's command
// with origin added to the origins they gave: --api-origin replaces what
// the variable or an earlier flag said, so the suggestion lists them all.
func (a *app) notAnOrigin(origin string) int {
	have := "none"
	if len(a.cfg.APIOrigins) > 0 {
		have = strings.Join(a.cfg.APIOrigins, ", ")
	}
	var list []string
	for _, o := range strings.Split(a.set.apiOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			list = append(list, o)
		}
	}
	list = append(list, origin)
	return a.report(fmt.Sprintf("%s is not an API origin of this profile (those are: %s), so your token is not sent there", origin, have),
		advice{text: "if " + origin + " should receive your token, add it to the API origins (--api-origin or TOKENWARD_API_ORIGIN; the resource's origin stays one):",
			run: ptr(a.line.with("api-origin", strings.Join(list, ",")))}, 2)
}

// allowed reports whether origin is one the token may go to.
func allowed(origin string, origins []string) bool {
	for _, o := range origins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}
