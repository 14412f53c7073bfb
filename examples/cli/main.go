// Command cli is a small, real command-line client for any OAuth 2.0 /
// OpenID Connect issuer, built on tokenward:
//
//	cli [flags] login [--device] [--force] [--param key=value]...
//	                           sign in (browser with PKCE, or device flow)
//	cli [flags] status         who is signed in, token expiry, storage
//	cli [flags] call URL|PATH  GET a URL with the access token; a PATH
//	                           (/things) is resolved against the API
//	cli [flags] logout         revoke at the server and delete locally
//	cli help                   commands, flags and environment variables
//
// Flags (each also read from an environment variable; they may come
// before or after the command):
//
//	--issuer         TOKENWARD_ISSUER         issuer URL (discovery)
//	--client-id      TOKENWARD_CLIENT_ID      registered client ID
//	--scopes         TOKENWARD_SCOPES         space-separated scopes
//	--resource       TOKENWARD_RESOURCE       RFC 8707 resource (the API's identifier)
//	--api-origin     TOKENWARD_API_ORIGIN     more origins the token may be sent to
//	                                          (comma-separated), added to the
//	                                          resource's origin; call refuses others
//	--profile        TOKENWARD_PROFILE        account name, for several accounts
//	--store          TOKENWARD_STORE          keychain (default), encrypted-file,
//	                                          memory or plaintext-file
//	--ca-file        TOKENWARD_CA_FILE        PEM CA bundle trusted besides the
//	                                          system's (a private or self-signed CA)
//	--login-timeout  TOKENWARD_LOGIN_TIMEOUT  how long a browser login waits (5m)
//	--verbose, -v    TOKENWARD_VERBOSE        log to stderr through log/slog
//	--allow-insecure-loopback                 accept http:// on 127.0.0.1 (local testing)
//
// login signs in only when no login is stored ("already signed in as X"),
// unless --force; --param adds a parameter to the authorization request
// (login_hint, prompt, audience, ...), the last value of a repeated key
// winning. A browser login says while it waits how long it will, and when
// it gives up names the likely causes, a wrong client ID first: the server
// shows that one in the browser, never to this program.
//
// A confidential client's secret comes only from TOKENWARD_CLIENT_SECRET
// (never a flag: flags show up in the process list). Tokens are kept in the
// OS keychain; --store encrypted-file (with TOKENWARD_PASSPHRASE) or memory
// opts in to something else, and memory is said to last only for the
// process. TOKENWARD_ACCESS_TOKEN supplies a fixed token instead (CI), and
// then no keychain is touched and status says so. The program never prints
// a token, not even with --verbose. Each error ends with one hint whose
// suggested command keeps the flags you typed. Text that comes from the
// server (error descriptions, the subject, scopes) reaches it through the
// client with every character a terminal could act on already escaped, so
// it prints it as it is; the one piece of server text it gets on its own,
// the API's answer to call (its status line, or net/http's error), it
// escapes itself (printable).
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
	"os"
	"os/signal"
	"strings"
	"sync/atomic"

	"github.com/tokenward/tokenward/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// app is one run of the program: what the user asked for, and the client.
type app struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer // shared with the client's prompt and logger: writes are serialized
	set    settings
	login  loginFlags
	line   cmdline // the command line as typed, for the hints' suggestions
	cfg    client.Options
	c      *client.Client
	// loginDone is set when a login took place (EventLogin), to tell it
	// from Login(IfNeeded) returning at once for a stored login.
	loginDone atomic.Bool
}

// loginFlags are login's own flags.
type loginFlags struct {
	device, force bool
	params        paramList
}

// commandArgs says how many arguments each command takes.
var commandArgs = map[string]int{"login": 0, "status": 0, "call": 1, "logout": 0}

// runWith is run with a test seam: configure, when non-nil, adjusts the
// client.Options built from flags and environment before the client is
// created (tests inject a fake keychain, a fake browser, a short login
// timeout). main never sets it.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, configure func(*client.Options)) int {
	errw := &lockedWriter{w: stderr}
	defer errw.close()
	a := &app{ctx: ctx, stdout: stdout, stderr: errw}
	if code, done := a.parse(args); done {
		return code
	}
	cfg, err := a.options()
	if err != nil {
		return a.report(err.Error(), advice{text: "fix the flag or variable above and retry:", run: &a.line}, 2)
	}
	if configure != nil {
		configure(&cfg)
	}
	a.tellWhenNoBrowser(&cfg)
	a.cfg = cfg
	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		return a.fail(err)
	}
	defer c.Close()
	a.c = c

	switch a.line.cmd {
	case "login":
		return a.doLogin()
	case "status":
		return a.doStatus()
	case "call":
		return a.doCall(a.line.args[0])
	default: // logout: parse admits no other command
		return a.doLogout()
	}
}

// parse reads args into a. It returns done when the run ends there (help,
// a usage error), with the exit code.
func (a *app) parse(args []string) (code int, done bool) {
	set, err := envDefaults()
	if err != nil {
		fmt.Fprintln(a.stderr, "cli:", err)
		return 2, true
	}
	fs := flag.NewFlagSet("cli", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {} // help goes to stdout, usage errors to stderr: printed below
	set.register(fs)
	if err := fs.Parse(args); err != nil {
		return a.usageError(err)
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(a.stderr, "cli: no command given")
		printUsage(a.stderr)
		return 2, true
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if cmd == "help" {
		printHelp(a.stdout)
		return 0, true
	}
	nargs, ok := commandArgs[cmd]
	if !ok {
		fmt.Fprintf(a.stderr, "cli: unknown command %q\n", printable(cmd))
		printUsage(a.stderr)
		return 2, true
	}
	cf := flag.NewFlagSet(cmd, flag.ContinueOnError)
	cf.SetOutput(a.stderr)
	cf.Usage = func() {}
	set.register(cf)
	if cmd == "login" {
		cf.BoolVar(&a.login.device, "device", false, "use the device flow (no browser on this machine)")
		cf.BoolVar(&a.login.force, "force", false, "sign in again even when already signed in")
		cf.Var(&a.login.params, "param", "extra authorization parameter key=value (repeatable)")
	}
	if err := cf.Parse(rest); err != nil {
		return a.usageError(err)
	}
	if cf.NArg() != nargs {
		fmt.Fprintf(a.stderr, "cli: %s takes %d argument(s), got %d\n", cmd, nargs, cf.NArg())
		printUsage(a.stderr)
		return 2, true
	}
	a.set = set
	var global, own []typedFlag
	for _, f := range typedFlags(cf) {
		switch f.name {
		case "device", "force":
			own = append(own, f)
		case "param":
		default:
			global = append(global, f)
		}
	}
	for _, p := range a.login.params {
		own = append(own, typedFlag{"param", p.key + "=" + p.value})
	}
	a.line = cmdline{flags: mergeTyped(typedFlags(fs), global)}.command(cmd, own, cf.Args()...)
	// A fixed token (CI) needs neither: nothing is requested from a server.
	if (set.issuer == "" || set.clientID == "") && os.Getenv("TOKENWARD_ACCESS_TOKEN") == "" {
		line := a.line
		var missing []string
		if set.issuer == "" {
			line = line.with("issuer", "https://login.example.com")
			missing = append(missing, "--issuer (or TOKENWARD_ISSUER)")
		}
		if set.clientID == "" {
			line = line.with("client-id", "my-app")
			missing = append(missing, "--client-id (or TOKENWARD_CLIENT_ID)")
		}
		return a.report(strings.Join(missing, " and ")+" required",
			advice{text: "name the authorization server and your app's registration there, for example:", run: &line}, 2), true
	}
	return 0, false
}

// usageError handles a failed flag parse: help asked for (exit 0, the
// help on stdout) or a bad flag (exit 2, the usage on stderr; the flag
// package has printed what was wrong).
func (a *app) usageError(err error) (int, bool) {
	if errors.Is(err, flag.ErrHelp) {
		printHelp(a.stdout)
		return 0, true
	}
	printUsage(a.stderr)
	return 2, true
}

// options builds the client's Options from the settings.
func (a *app) options() (client.Options, error) {
	s := a.set
	cfg := client.Options{
		Issuer: s.issuer, ClientID: s.clientID, ClientSecret: os.Getenv("TOKENWARD_CLIENT_SECRET"),
		Scopes: strings.Fields(s.scopes), Profile: s.profile,
		AllowInsecureLoopback: s.insecure, Prompt: a.stderr,
		LoginTimeout: s.loginTimeout,
		APIOrigins:   s.origins(),
		Logger:       a.logger(),
		Events: func(e client.Event) {
			if e.Kind == client.EventLogin {
				a.loginDone.Store(true)
			}
		},
	}
	cfg.AccessTokenEnv = "TOKENWARD_ACCESS_TOKEN" // CI: a token from the environment, no keychain
	if s.resource != "" {
		cfg.Resources = []string{s.resource}
	}
	if s.store != "" {
		m, err := parseStore(s.store)
		if err != nil {
			return cfg, err
		}
		cfg.StoreMode = m
	}
	if s.caFile != "" {
		tc, err := loadCA(s.caFile)
		if err != nil {
			return cfg, err
		}
		cfg.HTTP.TLSConfig = tc
	}
	if a.line.cmd == "login" && !a.login.device {
		// The client writes the address to open on Prompt; the line
		// saying that the program now waits follows it.
		cfg.Prompt = &waitingPrompt{w: a.stderr, timeout: func() string { return loginTimeout(a.cfg).String() }}
	}
	return cfg, nil
}
