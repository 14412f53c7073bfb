package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenward/tokenward/client"
)

// advice is the one hint an error ends with: what to do, and the command
// line that does it, when there is one.
type advice struct {
	text string
	run  *cmdline
}

// report prints msg and the advice, and returns code.
func (a *app) report(msg string, adv advice, code int) int {
	fmt.Fprintln(a.stderr, "cli:", msg)
	if adv.text != "" {
		fmt.Fprintln(a.stderr, "hint:", adv.text)
	}
	if adv.run != nil {
		fmt.Fprintln(a.stderr, " ", adv.run.String())
	}
	return code
}

// fail prints err with the hint for it and returns the exit code: 130
// when the user cancelled, 1 otherwise. tokenward's errors are safe to
// print as they are: no secret, and server text in them escaped.
func (a *app) fail(err error) int {
	if errors.Is(err, context.Canceled) && a.ctx.Err() != nil {
		fmt.Fprintln(a.stderr, "cli: cancelled")
		return 130
	}
	if a.timedOut(err) {
		// The raw error ("context deadline exceeded", after how many
		// attempts) says less than this; --verbose shows it.
		what := "the authorization server"
		var ee *client.EndpointError
		if errors.As(err, &ee) && ee.Endpoint != "" {
			what += " (" + ee.Op + " at " + ee.Endpoint + ")"
		}
		if a.cfg.Logger != nil {
			a.cfg.Logger.Debug("cli: timed out", "error", err)
		}
		return a.report(fmt.Sprintf("timed out after %s waiting for %s", httpTimeout(a.cfg), what),
			advice{text: "the server did not answer: check --issuer, your network, VPN or proxy, then retry:", run: &a.line}, 1)
	}
	return a.report(err.Error(), a.hint(err), 1)
}

// timedOut reports whether err is a request to the authorization server
// that took too long, as opposed to the user cancelling. Discovery's
// timeout comes as context.DeadlineExceeded, the endpoints' as
// ErrTokenEndpointTimeout.
func (a *app) timedOut(err error) bool {
	return errors.Is(err, client.ErrTokenEndpointTimeout) ||
		(errors.Is(err, context.DeadlineExceeded) && a.ctx.Err() == nil)
}

// httpTimeout is the bound of a call to the authorization server.
func httpTimeout(cfg client.Options) time.Duration {
	if cfg.HTTP.Timeout > 0 {
		return cfg.HTTP.Timeout
	}
	return 30 * time.Second
}

// loginTimeout is how long a browser login waits for the browser.
func loginTimeout(cfg client.Options) time.Duration {
	if cfg.LoginTimeout > 0 {
		return cfg.LoginTimeout
	}
	return 5 * time.Minute
}

// unknownAuthority reports whether err is a TLS certificate signed by a CA
// this machine does not trust. The client keeps the cause in the chain;
// the text is checked too, for a cause that was only quoted.
func unknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua) || strings.Contains(err.Error(), "certificate signed by unknown authority")
}

// hint returns the advice for the common mistakes behind err: each names
// the fix and, where a command does it, the user's own command line with
// the change made.
func (a *app) hint(err error) advice {
	login := a.line.command("login", nil)
	retry := a.line
	var le *client.LogoutError
	switch {
	case errors.As(err, &le) && !le.LocalDeleted:
		return advice{text: "the tokens could not all be deleted here (see above): fix that, then retry:", run: &retry}
	case unknownAuthority(err):
		if a.set.caFile != "" {
			return advice{text: "the server's certificate is not signed by a CA in " + a.set.caFile + " nor by one this machine trusts: give the file of the CA that signed it:",
				run: ptr(retry.with("ca-file", "ca.pem"))}
		}
		return advice{text: "the server's certificate is signed by a CA this machine does not trust (self-signed or a private CA): give that CA's certificate (PEM) with --ca-file or TOKENWARD_CA_FILE:",
			run: ptr(retry.with("ca-file", "ca.pem"))}
	case errors.Is(err, client.ErrIssuerMismatch):
		// The issuer the server names is not suggested as a command: a
		// different issuer may mean being sent to another server.
		return advice{text: "the server says its issuer is different from --issuer: if you trust that server, use the exact issuer URL it names (trailing slash included) as --issuer"}
	case errors.Is(err, client.ErrStoreLocked):
		// The error itself says whether the keychain is locked or has no
		// keyring yet, and how to fix either.
		return advice{text: "unlock your keychain, or create a keyring if the error above says there is none (Linux: Seahorse; macOS: security unlock-keychain), and retry. " +
			"Where nobody can (SSH, CI), keep tokens in an encrypted file instead (TOKENWARD_STORE=encrypted-file):\n  TOKENWARD_PASSPHRASE=... " +
			retry.with("store", "encrypted-file").String()}
	case errors.Is(err, client.ErrStoreUnavailable):
		return advice{text: "no OS keychain is available (headless Linux, SSH, container): keep tokens in an encrypted file instead (TOKENWARD_STORE=encrypted-file), " +
			"with its passphrase in TOKENWARD_PASSPHRASE:\n  TOKENWARD_PASSPHRASE=... " + retry.with("store", "encrypted-file").String()}
	case errors.Is(err, client.ErrInsecureURL):
		if strings.HasPrefix(a.set.issuer, "http://") && !a.set.insecure {
			return advice{text: "tokens only travel over https; for a local test server on 127.0.0.1, allow plain http there with --allow-insecure-loopback:",
				run: ptr(retry.with("allow-insecure-loopback", "true"))}
		}
		return advice{text: "tokens only travel over https: use https:// URLs for --issuer, --resource and --api-origin (plain http only on 127.0.0.1, with --allow-insecure-loopback)"}
	case errors.Is(err, client.ErrInvalidConfig) && a.line.cmd == "login" && len(a.login.params) > 0:
		if p, ok := a.refusedParam(err); ok {
			return advice{text: fmt.Sprintf("drop --param %s: tokenward sets that parameter itself (scope and resource have their flags, --scopes and --resource):", p),
				run: ptr(a.withoutParam(p))}
		}
	case errors.Is(err, client.ErrInteractionRequired):
		if _, ok := a.paramValue("prompt"); ok {
			return advice{text: "the server needs you to sign in or consent in the browser, which --param prompt=... did not allow: sign in without it:", run: ptr(a.withoutParam("prompt"))}
		}
		return advice{text: "the server needs you to sign in or consent in the browser: sign in again:", run: &login}
	case errors.Is(err, client.ErrAccessDenied):
		return advice{text: "the sign-in was declined (by you, or by the server's policy for this account): to try again, with another account if need be:", run: &login}
	case errors.Is(err, client.ErrCallbackRejected):
		return advice{text: "the login did not complete (see above); if the server refused the request, check --scopes, --resource and the client's registration, then sign in again:", run: &login}
	case errors.Is(err, client.ErrInvalidScope):
		return advice{text: "the server refused the scopes: check --scopes against the scopes the client is registered for, then sign in again:", run: &login}
	case errors.Is(err, client.ErrInvalidTarget):
		return advice{text: "the server refused the resource: check --resource against the APIs the client may ask tokens for, then sign in again:", run: &login}
	case errors.Is(err, client.ErrClientRejected):
		return advice{text: "the server rejected the client: check --client-id, TOKENWARD_CLIENT_SECRET and the client's registration, then retry:", run: &retry}
	case errors.Is(err, client.ErrReauthRequired):
		return advice{text: "you are not signed in (or the login has ended): sign in, then retry:", run: &login}
	case errors.Is(err, client.ErrLoginExpired):
		return advice{text: "the code was not approved in time: sign in again, and approve the code promptly:", run: &retry}
	case errors.Is(err, client.ErrTemporarilyUnavailable):
		return advice{text: "the authorization server is busy or down: wait a little, then retry:", run: &retry}
	case errors.Is(err, client.ErrNetwork):
		return advice{text: "could not reach the authorization server: check --issuer and your network, then retry:", run: &retry}
	case errors.Is(err, client.ErrDiscovery):
		return advice{text: "discovery failed: check that --issuer is the issuer URL (it serves /.well-known/openid-configuration or /.well-known/oauth-authorization-server)"}
	}
	return advice{text: "for what happened step by step, run it again with --verbose:", run: ptr(retry.with("verbose", "true"))}
}

// refusedParam returns the --param key the client refused, which its
// message quotes.
func (a *app) refusedParam(err error) (string, bool) {
	for _, p := range a.login.params {
		if strings.Contains(err.Error(), fmt.Sprintf("%q", p.key)) {
			return p.key, true
		}
	}
	return "", false
}

// paramValue returns the value of --param key, when given.
func (a *app) paramValue(key string) (string, bool) {
	for _, p := range a.login.params {
		if strings.EqualFold(p.key, key) {
			return p.value, true
		}
	}
	return "", false
}

// withoutParam returns the user's login command without --param key.
func (a *app) withoutParam(key string) cmdline {
	var own []typedFlag
	for _, f := range a.line.cmdFlags {
		if k, _, _ := strings.Cut(f.value, "="); f.name == "param" && strings.EqualFold(k, key) {
			continue
		}
		own = append(own, f)
	}
	return a.line.command("login", own)
}

// loginExpired reports a browser login that ended by its timeout. Nothing
// came back from the browser, and the server tells the browser, not this
// program, what went wrong: the causes are listed, the likeliest first.
func (a *app) loginExpired() int {
	id := fmt.Sprintf("%q", printable(a.set.clientID))
	device := a.line.command("login", []typedFlag{{"device", "true"}})
	causes := "the likely causes, most likely first:\n" +
		"  1. a wrong client ID (" + id + "): the server says so in the browser, not to this program; check --client-id against the registration\n" +
		"  2. the redirect URI is not registered for client " + id + ": register http://127.0.0.1/callback (any port, RFC 8252)\n" +
		"  3. the browser window was closed, or the sign-in took longer than --login-timeout\n" +
		"Or sign in from another device (no browser needed here):"
	return a.report(fmt.Sprintf("the browser login timed out after %s: no answer came back from the browser", loginTimeout(a.cfg)),
		advice{text: causes, run: &device}, 1)
}

func ptr[T any](v T) *T { return &v }
