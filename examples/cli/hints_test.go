package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// TestCLIHints checks the helpful errors for common mistakes: each case
// provokes one mistake against the fake server (or a fake keychain) and
// asserts the hint that names the fix, and that nothing secret is printed.
func TestCLIHints(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	// A server where the client registered only a web redirect URI, so the
	// browser login's loopback redirect URI is refused with an error page.
	const webClient = "web-only-client"
	webAS := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: webClient, RedirectURIs: []string{"https://app.example/callback"}}}})
	// A server that answers every authorization request by redirecting
	// back with an OAuth error: the redirect URI is fine, the request not.
	refusingAS := oauthtest.Start(t, oauthtest.Config{AuthorizeError: "invalid_scope"})
	loopback := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x"}
	// The opt-in suggested keeps the user's flags and adds the store.
	optIn := []string{"TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE=... cli --allow-insecure-loopback --client-id x --issuer " + as.Issuer() + " --store encrypted-file status"}

	// keychain returns a configure func that puts the fake keychain fk in
	// place of the OS keychain (the mode stays the default, keychain).
	keychain := func(fk *fakekeychain.Fake) func(*testing.T, *client.Options) {
		return func(t *testing.T, cfg *client.Options) {
			lockDir := t.TempDir()
			cfg.StoreOptions = append(cfg.StoreOptions, func(o *store.Options) { o.Backend = fk; o.LockDir = lockDir })
		}
	}
	locked := func(m fakekeychain.Model) *fakekeychain.Fake {
		fk := fakekeychain.New(m)
		fk.SetLocked(true)
		return fk
	}
	missing := fakekeychain.NewSecretService()
	missing.SetNoBus(true)
	browsed := make(chan error, 1)

	cases := []struct {
		name      string
		args      []string
		store     string // TOKENWARD_STORE
		configure func(*testing.T, *client.Options)
		msg       []string // must be in the error line
		want      []string // must be in the hint
		not       []string // must not be in the hint
	}{
		{name: "http issuer", args: []string{"--issuer", as.Issuer(), "--client-id", "x", "status"}, store: "memory",
			want: []string{"hint: tokens only travel over https", "cli --allow-insecure-loopback --client-id x --issuer " + as.Issuer() + " status"}},
		{name: "wrong issuer", args: []string{"--allow-insecure-loopback", "--issuer", as.Issuer() + "/", "--client-id", "x", "status"}, store: "memory",
			want: []string{"hint: the server says its issuer is different", "exact issuer URL"}},
		{name: "unreachable issuer", args: []string{"--allow-insecure-loopback", "--issuer", "http://127.0.0.1:1", "--client-id", "x", "login"}, store: "memory",
			want: []string{"hint: could not reach the authorization server", "check --issuer", "cli --allow-insecure-loopback --client-id x --issuer http://127.0.0.1:1 login"}},
		{name: "no issuer", args: []string{"status"}, store: "memory",
			msg: []string{"cli: --issuer (or TOKENWARD_ISSUER) and --client-id (or TOKENWARD_CLIENT_ID) required"}, want: []string{"cli --client-id my-app --issuer https://login.example.com status"}},
		{name: "keychain missing", args: slices.Concat(loopback, []string{"status"}), configure: keychain(missing),
			want: slices.Concat([]string{"hint: no OS keychain is available"}, optIn)},
		{name: "keychain locked (Secret Service)", args: slices.Concat(loopback, []string{"status"}), configure: keychain(locked(fakekeychain.SecretService)),
			want: slices.Concat([]string{"hint: unlock your keychain"}, optIn)},
		{name: "keychain locked (macOS)", args: slices.Concat(loopback, []string{"status"}), configure: keychain(locked(fakekeychain.MacOS)),
			want: slices.Concat([]string{"hint: unlock your keychain"}, optIn)},
		{name: "unregistered redirect", args: []string{"--allow-insecure-loopback", "--issuer", webAS.Issuer(), "--client-id", webClient, "login"}, store: "memory",
			configure: func(t *testing.T, cfg *client.Options) {
				// The login can only end by its timeout: the server never
				// redirects back. Keep it short.
				cfg.LoginTimeout = 300 * time.Millisecond
				cfg.OpenBrowser = func(u string) error {
					// The browser opened and showed the server's error
					// page: the opener itself succeeded.
					browsed <- webAS.Browse(context.Background(), u)
					return nil
				}
			},
			msg: []string{"cli: the browser login timed out after 300ms"}, want: []string{"hint: the likely causes", "1. a wrong client ID", "2. the redirect URI is not registered for client \"" + webClient + "\": register http://127.0.0.1/callback",
				"3. the browser window was closed", "cli --allow-insecure-loopback --client-id " + webClient + " --issuer " + webAS.Issuer() + " login --device"}},
		{name: "login refused after redirect", args: []string{"--allow-insecure-loopback", "--issuer", refusingAS.Issuer(), "--client-id", oauthtest.DefaultClientID, "login"}, store: "memory",
			configure: func(t *testing.T, cfg *client.Options) {
				cfg.OpenBrowser = func(u string) error {
					// The browser opened; what the callback answered is
					// the login's business, not the opener's.
					_ = refusingAS.Browse(context.Background(), u)
					return nil
				}
			},
			// The callback arrived, so the redirect URI is registered:
			// the hint must not send the user to change it.
			want: []string{"hint: the login did not complete", "check --scopes", "--client-id " + oauthtest.DefaultClientID + " --issuer " + refusingAS.Issuer() + " login\n"},
			not:  []string{"redirect URI"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("TOKENWARD_STORE", c.store)
			var configure func(*client.Options)
			if c.configure != nil {
				configure = func(cfg *client.Options) { c.configure(t, cfg) }
			}
			var out, errOut bytes.Buffer
			if code := runWith(t.Context(), c.args, &out, &errOut, configure); code == 0 {
				t.Fatalf("%v succeeded\nstdout: %s", c.args, out.String())
			}
			// Check the hint alone where there is one: the error above it
			// may name the opt-ins too (store.ErrUnavailable does).
			got := errOut.String()
			if i := strings.Index(got, "\nhint: "); i >= 0 {
				got = got[i+1:]
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q\nstderr: %s", got, w, errOut.String())
				}
			}
			for _, w := range c.msg {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q\nstderr: %s", w, errOut.String())
				}
			}
			for _, w := range c.not {
				if strings.Contains(got, w) {
					t.Errorf("%q contains %q", got, w)
				}
			}
			if f := leakscan.Find(out.String() + errOut.String()); len(f) > 0 {
				t.Fatalf("the CLI printed secrets: %v", f)
			}
		})
	}

	// The unregistered-redirect case really was one: the browser got the
	// server's error page, and no code was ever issued or exchanged.
	select {
	case err := <-browsed:
		if err == nil {
			t.Fatal("the fake server accepted the unregistered loopback redirect URI")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the CLI never opened the browser")
	}
	if st := webAS.Stats(); st.Requests[oauthtest.EndpointAuthorize] != 1 || st.CodeExchanges != 0 {
		t.Fatalf("web-only server: %d authorization requests, %d code exchanges; want 1 and 0", st.Requests[oauthtest.EndpointAuthorize], st.CodeExchanges)
	}
}

// The suggested command keeps the flags the user typed, before or after
// the command: here the profile and the scopes of a call made before
// signing in.
func TestHintsKeepTypedFlags(t *testing.T) {
	as, api := fixedToken(t)
	t.Setenv("TOKENWARD_ACCESS_TOKEN", "")
	fileStore(t)
	r := cliRun(t, nil, "--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID,
		"--scopes", "openid read", "call", "--profile", "work", "--resource", api.Resource(), api.URL()+"/me")
	r.want(t, 1, "hint: you are not signed in",
		"  cli --allow-insecure-loopback --client-id "+oauthtest.DefaultClientID+" --issuer "+as.Issuer()+" --profile work --resource "+api.Resource()+" --scopes 'openid read' login\n")
	if strings.Count(r.stderr, "hint:") != 1 {
		t.Fatalf("want one hint:\n%s", r.stderr)
	}
}

// A server that does not answer: the message says how long was waited
// (the client's default is 30 s; the test seam shortens it), whether
// discovery or a token-endpoint call timed out, not "context deadline
// exceeded".
func TestTimeoutSaysHowLong(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	memoryStore(t)
	short := func(cfg *client.Options) { cfg.HTTP.Timeout = 200 * time.Millisecond; cfg.HTTP.RetryMax = -1 }
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "--profile", "p"}

	// status needs no server (it answers from the store); login does.
	as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointDiscovery})
	cliRun(t, short, append(base, "status")...).want(t, 0, "not signed in (profile p)")
	r := cliRun(t, short, append(base, "login")...)
	r.want(t, 1, "cli: timed out after 200ms waiting for the authorization server", "hint: the server did not answer",
		"cli --allow-insecure-loopback --client-id "+oauthtest.DefaultClientID+" --issuer "+as.Issuer()+" --profile p login")
	if strings.Contains(r.all(), "deadline exceeded") {
		t.Fatalf("the raw error is shown: %s", r.all())
	}
	as.ClearFaults()
	as.ReleaseHangs()

	as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointDeviceAuthorization})
	r = cliRun(t, short, append(base, "login", "--device")...)
	r.want(t, 1, "cli: timed out after 200ms waiting for the authorization server (device authorization at "+as.DeviceAuthorizationURL()+")")
	as.ClearFaults()
	as.ReleaseHangs()

	// Without the seam, the message names the client's default.
	if got := httpTimeout(client.Options{}); got != 30*time.Second {
		t.Fatalf("default timeout %s, want 30s", got)
	}
}
