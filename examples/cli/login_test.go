package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
)

// inOrder fails the test unless every string is in s, each after the one
// before.
func inOrder(t *testing.T, s string, strs ...string) {
	t.Helper()
	at := 0
	for _, w := range strs {
		i := strings.Index(s[at:], w)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", w, s)
		}
		at += i + len(w)
	}
}

// A browser login with a mistyped client ID: the server shows its error in
// the browser and never redirects back. The program says while it waits
// how long it will, then gives up after --login-timeout (or
// TOKENWARD_LOGIN_TIMEOUT) naming the likely causes, the client ID first.
func TestLoginTimeoutSaysWhy(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	memoryStore(t)
	browsed := make(chan error, 2)
	configure := func(cfg *client.Options) {
		cfg.OpenBrowser = func(u string) error {
			browsed <- as.Browse(context.Background(), u)
			return nil // the browser opened, and showed the server's error page
		}
	}
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "tokenward-demoo"}
	r := cliRun(t, configure, append(base, "--login-timeout", "300ms", "login")...)
	r.want(t, 1)
	inOrder(t, r.stderr, "If it does not open, visit:",
		"Waiting for you to sign in in the browser (Ctrl-C to cancel; gives up after 300ms)",
		"cli: the browser login timed out after 300ms",
		"1. a wrong client ID (\"tokenward-demoo\")", "not to this program",
		"2. the redirect URI is not registered", "http://127.0.0.1/callback",
		"3. the browser window was closed",
		"cli --allow-insecure-loopback --client-id tokenward-demoo --issuer "+as.Issuer()+" --login-timeout 300ms login --device")
	if err := <-browsed; err == nil {
		t.Fatal("the server accepted the mistyped client ID")
	}

	t.Setenv("TOKENWARD_LOGIN_TIMEOUT", "250ms")
	cliRun(t, configure, append(base, "login")...).want(t, 1, "gives up after 250ms", "timed out after 250ms")
	<-browsed
	t.Setenv("TOKENWARD_LOGIN_TIMEOUT", "soon")
	cliRun(t, configure, append(base, "login")...).want(t, 2, `TOKENWARD_LOGIN_TIMEOUT="soon" is not a positive duration`)
}

// signalHandler passes records on and closes done once the client has
// reported that the browser could not be opened, so that the test's
// browser signs in only after the program has told the user.
type signalHandler struct {
	slog.Handler
	once *sync.Once
	done chan struct{}
}

// Enabled is true at every level: the browser's failure is a warning, and
// the program's own logger may be off.
func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h signalHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if strings.HasPrefix(r.Message, "client: could not open a browser") {
		h.once.Do(func() { close(h.done) })
	}
	return err
}

// When no browser can be started the user is told, and can still sign in
// with the printed address.
func TestLoginBrowserNotOpened(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	memoryStore(t)
	told := make(chan struct{})
	configure := func(cfg *client.Options) {
		cfg.Logger = slog.New(signalHandler{slog.DiscardHandler, &sync.Once{}, told})
		cfg.OpenBrowser = func(u string) error {
			go func() {
				<-told // the person reads the message, then opens the address
				_ = as.Browse(context.Background(), u)
			}()
			return errors.New(`exec: "xdg-open": executable file not found in $PATH`)
		}
	}
	r := cliRun(t, configure, "--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "--profile", "p", "login")
	r.want(t, 0, "signed in")
	inOrder(t, r.stderr, "cli: the browser could not be opened: open the address above",
		"cli --allow-insecure-loopback --client-id "+oauthtest.DefaultClientID+" --issuer "+as.Issuer()+" --profile p login --device")
}

// login keeps a stored login (client.IfNeeded) and says so; --force signs
// in again.
func TestLoginIfNeeded(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{IDToken: true, Subject: "ada"})
	fileStore(t)
	args := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "login"}
	cliRun(t, browser(as), args...).want(t, 0, "signed in as ada")
	r := cliRun(t, browser(as), args...)
	r.want(t, 0, "already signed in as ada (profile default); use --force to sign in again")
	if n := as.Stats().Requests[oauthtest.EndpointAuthorize]; n != 1 {
		t.Fatalf("%d authorization requests after the second login, want 1", n)
	}
	cliRun(t, browser(as), append(args, "--force")...).want(t, 0, "signed in as ada")
	if n := as.Stats().Requests[oauthtest.EndpointAuthorize]; n != 2 {
		t.Fatalf("%d authorization requests after login --force, want 2", n)
	}
}

// --param adds authorization parameters; one the client sets itself is
// refused with a hint that drops it and keeps the rest; prompt=none that
// the server cannot honour gets a hint without it.
func TestLoginParam(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{NoSession: true})
	memoryStore(t)
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "login"}
	cliRun(t, browser(as), append(base, "--param", "login_hint=ada@example.com", "--param", "ui_locales=fr")...).want(t, 0, "signed in")
	reqs := as.EndpointRequests(oauthtest.EndpointAuthorize)
	if len(reqs) != 1 || reqs[0].Params.Get("login_hint") != "ada@example.com" || reqs[0].Params.Get("ui_locales") != "fr" {
		t.Fatalf("authorization requests: %+v", reqs)
	}

	r := cliRun(t, browser(as), append(base, "--param", "login_hint=ada@example.com", "--param", "state=mine")...)
	r.want(t, 1, `parameter "state" cannot be set`, "hint: drop --param state",
		"cli --allow-insecure-loopback --client-id "+oauthtest.DefaultClientID+" --issuer "+as.Issuer()+" login --param login_hint=ada@example.com\n")

	// A parameter that may carry a credential is never repeated in the
	// suggested command.
	const hint = "canary-id-token-hint-5d1e"
	r = cliRun(t, browser(as), append(base, "--param", "id_token_hint="+hint, "--param", "redirect_uri=http://evil.example/")...)
	r.want(t, 1, `parameter "redirect_uri" cannot be set`, "login --param id_token_hint=...\n")
	if strings.Contains(r.all(), hint) {
		t.Fatalf("the id_token_hint was printed: %s", r.all())
	}

	r = cliRun(t, browser(as), append(base, "--force", "--param", "prompt=none")...)
	r.want(t, 1, "login_required", "which --param prompt=... did not allow",
		"cli --allow-insecure-loopback --client-id "+oauthtest.DefaultClientID+" --issuer "+as.Issuer()+" login --force\n")
}

// A memory store is said to last only for this process, at login and in
// status; a fixed token is not a login.
func TestLoginMemoryStoreWarns(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	args := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID}
	t.Setenv("TOKENWARD_STORE", "")
	r := cliRun(t, browser(as), append(args, "--store", "memory", "login")...)
	r.want(t, 0, "signed in", "WARNING: the tokens are kept in memory only", "this login lasts only for this process", "forgotten when cli exits")
	cliRun(t, nil, append(args, "--store", "memory", "status")...).want(t, 0, "not signed in", "nothing is kept after this command")
	cliRun(t, nil, append(args, "--store", "nowhere", "status")...).want(t, 2, `--store "nowhere": want keychain, encrypted-file, memory or plaintext-file`)

	t.Setenv("TOKENWARD_ACCESS_TOKEN", "not-a-login")
	cliRun(t, nil, append(args, "--store", "memory", "login")...).want(t, 2, "TOKENWARD_ACCESS_TOKEN is set", "unset TOKENWARD_ACCESS_TOKEN to sign in")
}
