// Command cli is a small, real command-line client for any OAuth 2.0 /
// OpenID Connect issuer, built on tokenward:
//
//	cli [flags] login [--device]   sign in (browser with PKCE, or device flow)
//	cli [flags] status             who is signed in, token expiry, storage
//	cli [flags] call URL           GET URL with the access token
//	cli [flags] logout             revoke at the server and delete locally
//
// Flags (each also read from an environment variable):
//
//	--issuer       TOKENWARD_ISSUER       issuer URL (discovery)
//	--client-id    TOKENWARD_CLIENT_ID    registered client ID
//	--scopes       TOKENWARD_SCOPES       space-separated scopes
//	--resource     TOKENWARD_RESOURCE     RFC 8707 resource (the API's identifier)
//	--api-origin   TOKENWARD_API_ORIGIN   origin(s) the token may be sent to (comma-separated;
//	                                      default: the resource's origin); call refuses others
//	--profile      TOKENWARD_PROFILE      account name, for several accounts
//	--allow-insecure-loopback             accept http:// on 127.0.0.1 (local testing)
//
// A confidential client's secret comes only from TOKENWARD_CLIENT_SECRET
// (never a flag: flags show up in the process list). Tokens are kept in the
// OS keychain; TOKENWARD_STORE=encrypted-file (with TOKENWARD_PASSPHRASE) or
// memory opts in to something else; TOKENWARD_ACCESS_TOKEN supplies a fixed
// token instead (CI), and then no keychain is touched. The program never
// prints a token. Text that comes from the server (error descriptions, the
// subject, scopes) reaches it through the client with every character a
// terminal could act on already escaped, so it prints it as it is; the one
// piece of server text it gets on its own, the API's answer to call (its
// status line, or net/http's error), it escapes itself (printable).
//
// The program imports only tokenward's public packages and the standard
// library, so it can be copied as the start of your own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokenward/tokenward/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// runWith is run with a test seam: configure, when non-nil, adjusts the
// client.Options built from flags and environment before the client is
// created (tests inject a fake keychain, a fake browser, a short login
// timeout). main never sets it.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, configure func(*client.Options)) int {
	fs := flag.NewFlagSet("cli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	issuer := fs.String("issuer", env("TOKENWARD_ISSUER", ""), "issuer URL")
	clientID := fs.String("client-id", env("TOKENWARD_CLIENT_ID", ""), "client ID")
	scopes := fs.String("scopes", env("TOKENWARD_SCOPES", ""), "space-separated scopes")
	resource := fs.String("resource", env("TOKENWARD_RESOURCE", ""), "RFC 8707 resource indicator")
	origins := fs.String("api-origin", env("TOKENWARD_API_ORIGIN", ""), "comma-separated API origins")
	profile := fs.String("profile", env("TOKENWARD_PROFILE", ""), "profile (account) name")
	insecure := fs.Bool("allow-insecure-loopback", false, "accept http:// URLs on loopback hosts")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cli [flags] login [--device] | status | call URL | logout")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if *issuer == "" || *clientID == "" {
		fmt.Fprintln(stderr, "cli: --issuer and --client-id are required (or TOKENWARD_ISSUER and TOKENWARD_CLIENT_ID)")
		return 2
	}
	cfg := client.Options{
		Issuer: *issuer, ClientID: *clientID, ClientSecret: os.Getenv("TOKENWARD_CLIENT_SECRET"),
		Scopes: strings.Fields(*scopes), Profile: *profile,
		AllowInsecureLoopback: *insecure, Prompt: stderr,
	}
	if *resource != "" {
		cfg.Resources = []string{*resource}
	}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.APIOrigins = append(cfg.APIOrigins, o)
		}
	}
	cfg.AccessTokenEnv = "TOKENWARD_ACCESS_TOKEN" // CI: a token from the environment, no keychain
	if configure != nil {
		configure(&cfg)
	}

	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()

	switch cmd {
	case "login":
		lf := flag.NewFlagSet("login", flag.ContinueOnError)
		lf.SetOutput(stderr)
		device := lf.Bool("device", false, "use the device flow (no browser on this machine)")
		if err := lf.Parse(rest); err != nil {
			return 2
		}
		var opts []func(*client.LoginOptions)
		if *device {
			opts = append(opts, client.WithDevice())
		}
		if err := c.Login(ctx, opts...); err != nil {
			if !*device && errors.Is(err, client.ErrLoginExpired) {
				// No callback arrived. The usual cause: the server refused
				// the loopback redirect URI and showed an error page in the
				// browser instead of redirecting back here.
				return report(stderr, err, redirectHint(cfg))
			}
			return fail(stderr, err)
		}
		st, _ := c.Status(ctx)
		who := "signed in"
		if st != nil && st.Subject != "" {
			who = "signed in as " + st.Subject // escaped by the client
		}
		fmt.Fprintln(stdout, who)
	case "status":
		st, err := c.Status(ctx)
		if err != nil {
			return fail(stderr, err)
		}
		printStatus(stdout, st)
	case "call":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "usage: cli call URL")
			return 2
		}
		return callURL(ctx, c, rest[0], stdout, stderr, cfg)
	case "logout":
		res, err := c.Logout(ctx)
		if err != nil {
			var le *client.LogoutError
			if errors.As(err, &le) && le.LocalDeleted {
				fmt.Fprintf(stdout, "signed out locally; the server may still honour: %s\n", strings.Join(le.NotRevoked, ", "))
				return 1
			}
			return fail(stderr, err)
		}
		printLogout(stdout, res)
	default:
		fs.Usage()
		return 2
	}
	return 0
}

// printLogout says what Logout did, and claims nothing it did not do.
func printLogout(w io.Writer, res *client.LogoutResult) {
	if !res.Found {
		fmt.Fprintln(w, "not signed in: nothing to revoke or delete")
		return
	}
	if len(res.Revoked) > 0 {
		fmt.Fprintf(w, "revoked at the server: %s\n", strings.Join(res.Revoked, ", "))
	}
	if len(res.NotRevocable) > 0 {
		fmt.Fprintf(w, "the server does not revoke access tokens; they expire on their own: %s\n", strings.Join(res.NotRevocable, ", "))
	}
	fmt.Fprintln(w, "signed out (tokens deleted locally)")
}

// printStatus prints st. Its text fields (the subject and the scopes come
// from the server) are escaped by the client, so they are printed as they
// are.
func printStatus(w io.Writer, st *client.Status) {
	if !st.LoggedIn {
		fmt.Fprintf(w, "not signed in (profile %s); run: cli login\n", st.Profile)
	} else {
		who := st.Subject
		if who == "" {
			who = "(subject unknown)"
		}
		fmt.Fprintf(w, "signed in as %s (profile %s)\n", who, st.Profile)
		if len(st.Scopes) > 0 {
			fmt.Fprintf(w, "scopes:        %s\n", strings.Join(st.Scopes, " "))
		}
		if !st.AccessTokenExpiry.IsZero() {
			fmt.Fprintf(w, "access token:  expires in %s\n", until(st.AccessTokenExpiry))
		}
		switch {
		case !st.HasRefreshToken:
			fmt.Fprintln(w, "refresh token: none")
		case st.RefreshTokenExpiry.IsZero():
			fmt.Fprintln(w, "refresh token: stored")
		default:
			fmt.Fprintf(w, "refresh token: stored, expires in %s\n", until(st.RefreshTokenExpiry))
		}
	}
	s := st.Storage
	fmt.Fprintf(w, "storage:       %s %s (encrypted: %v)\n", s.Backend, s.Location, s.Encrypted)
	if s.Warning != "" {
		fmt.Fprintf(w, "WARNING:       %s\n", s.Warning)
	}
}

func until(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d < 0 {
		return "0s (expired; it is refreshed on next use)"
	}
	return d.String()
}

func callURL(ctx context.Context, c *client.Client, target string, stdout, stderr io.Writer, cfg client.Options) int {
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintln(stderr, "cli: bad URL:", printable(err.Error()))
		return 2
	}
	// The token goes only to the origins the user configured, never to
	// whatever URL was typed: refuse the call rather than send it without.
	origin := req.URL.Scheme + "://" + req.URL.Host
	if !allowed(origin, cfg) {
		origin = printable(origin)
		fmt.Fprintf(stderr, "cli: %s is not an API origin of this profile; add --api-origin %s (or TOKENWARD_API_ORIGIN) if it should receive your token\n", origin, origin)
		return 2
	}
	if _, err := c.Token(ctx); err != nil {
		return fail(stderr, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fail(stderr, escaped{err})
	}
	defer resp.Body.Close()
	// The status line's reason phrase is the API's own text, which does not
	// come through the client: escaped here. The body is the output the
	// user asked for and is copied as it is, as curl does.
	fmt.Fprintf(stderr, "%s %s\n", printable(resp.Proto), printable(resp.Status))
	if _, err := io.Copy(stdout, io.LimitReader(resp.Body, 10<<20)); err != nil {
		return fail(stderr, escaped{err})
	}
	if resp.StatusCode >= 400 {
		return 1
	}
	return 0
}

// allowed reports whether origin is one the token may go to: a configured
// API origin, or the origin of the configured resource.
func allowed(origin string, cfg client.Options) bool {
	list := cfg.APIOrigins
	if len(list) == 0 {
		for _, r := range cfg.Resources {
			if u, err := url.Parse(r); err == nil && u.Host != "" {
				list = append(list, u.Scheme+"://"+u.Host)
			}
		}
	}
	for _, o := range list {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// optInHint names the storage modes a user can opt in to instead of the OS
// keychain (store.EnvMode and store.EnvPassphrase; README "Configuration").
const optInHint = "  TOKENWARD_STORE=encrypted-file TOKENWARD_PASSPHRASE=... cli ...   (encrypted file)\n" +
	"  TOKENWARD_STORE=memory cli ...                                 (nothing kept)"

// redirectHint names the redirect URI to register for a browser login.
func redirectHint(cfg client.Options) string {
	return "no login callback arrived; if the browser showed an error about the redirect URI, register " +
		"http://127.0.0.1/callback (any port, RFC 8252) for client " + cfg.ClientID + ", or use: cli login --device"
}

// fail prints err with a hint for the common mistakes and returns the exit
// code. Errors from tokenward never contain a token.
func fail(w io.Writer, err error) int {
	return report(w, err, hint(err))
}

// report prints err and, when there is any, the advice; it returns the
// exit code.
func report(w io.Writer, err error, advice string) int {
	// tokenward's errors are safe to print as they are: no secret, and
	// server text in them escaped.
	fmt.Fprintln(w, "cli:", err)
	if errors.Is(err, context.Canceled) {
		return 130
	}
	if advice != "" {
		fmt.Fprintln(w, "hint:", advice)
	}
	return 1
}

// hint returns advice for the common mistakes behind err, or "".
func hint(err error) string {
	switch {
	case errors.Is(err, client.ErrIssuerMismatch):
		return "the server says its issuer is different from --issuer: use the exact issuer URL (trailing slash included) from its discovery document"
	case errors.Is(err, client.ErrStoreLocked):
		// The error itself says whether the keychain is locked or has no
		// keyring yet, and how to fix either.
		return "unlock your keychain, or create a keyring if the error above says there is none (Linux: Seahorse; macOS: security unlock-keychain), and retry.\n" +
			"Where nobody can (SSH, CI), opt in to another store:\n" + optInHint
	case errors.Is(err, client.ErrStoreUnavailable):
		return "no OS keychain is available (headless Linux, SSH, container). Opt in to another store:\n" + optInHint
	case errors.Is(err, client.ErrInsecureURL):
		return "tokens only travel over https; for a local test server on 127.0.0.1 add --allow-insecure-loopback"
	case errors.Is(err, client.ErrCallbackRejected):
		return "the login did not complete (see above); if the server refused the request, check --scopes, --resource and the client's registration, then run cli login again"
	case errors.Is(err, client.ErrReauthRequired):
		return "run: cli login"
	case errors.Is(err, client.ErrClientRejected):
		return "the server rejected the client: check --client-id, TOKENWARD_CLIENT_SECRET and the client's registration"
	case errors.Is(err, client.ErrNetwork), errors.Is(err, client.ErrTokenEndpointTimeout):
		return "could not reach the authorization server: check --issuer and your network"
	case errors.Is(err, client.ErrDiscovery):
		return "discovery failed: check that --issuer is the issuer URL (it serves /.well-known/openid-configuration or /.well-known/oauth-authorization-server)"
	}
	return ""
}

// printable returns s with every character that is not graphic (control
// characters such as ESC and carriage return, bidi overrides, line
// separators) shown as a Go escape (\x1b, \r, \u202e), and every byte
// that is not UTF-8 as \xff, so that text from a server cannot act on the
// terminal. It is for the little text that does not come through the
// client, which escapes what it returns.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRuneToGraphic(r) // '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// escaped is an error that did not come from the client (net/http's, when
// calling the API), printed through printable: it may quote what the API
// sent, such as a redirect's target.
type escaped struct{ err error }

// Error is the message, escaped.
func (e escaped) Error() string { return printable(e.err.Error()) }

// Unwrap returns the error, for errors.Is (context.Canceled: exit 130).
func (e escaped) Unwrap() error { return e.err }
