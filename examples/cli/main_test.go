package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
)

// TestCLI runs login (device flow), status, call, logout against the fake
// server, with tokens kept in an encrypted file (the opt-in for headless
// machines) in a temporary directory, and scans everything printed for
// tokens.
func TestCLI(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{DeviceInterval: time.Second, IDToken: true, Subject: "grace"})
	api := oauthtest.StartAPI(t, as, "")
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir+"/config")
	t.Setenv("XDG_CACHE_HOME", dir+"/cache")
	t.Setenv("TOKENWARD_STORE", "encrypted-file")
	t.Setenv("TOKENWARD_PASSPHRASE", "correct horse battery staple")
	t.Setenv("TOKENWARD_ISSUER", as.Issuer())
	t.Setenv("TOKENWARD_CLIENT_ID", oauthtest.DefaultClientID)
	t.Setenv("TOKENWARD_RESOURCE", api.Resource())

	var all bytes.Buffer
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(t.Context(), append([]string{"--allow-insecure-loopback", "--scopes", "openid read"}, args...), &out, &errOut)
		all.Write(out.Bytes())
		all.Write(errOut.Bytes())
		if code != want {
			t.Fatalf("cli %v = %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	if s := cli(0, "status"); !strings.Contains(s, "not signed in") {
		t.Fatalf("status before login: %s", s)
	}
	if s := cli(1, "call", api.URL()+"/me"); !strings.Contains(s, "--scopes 'openid read' login\n") {
		t.Fatalf("call before login: %s", s)
	}
	if s := cli(0, "login", "--device"); !strings.Contains(s, "signed in as grace") || !strings.Contains(s, "enter the code") {
		t.Fatalf("login: %s", s)
	}
	if s := cli(0, "status"); !strings.Contains(s, "signed in as grace") || !strings.Contains(s, "encrypted file") {
		t.Fatalf("status: %s", s)
	}
	if s := cli(0, "call", api.URL()+"/me"); !strings.Contains(s, `"sub":"grace"`) {
		t.Fatalf("call: %s", s)
	}
	if s := cli(0, "logout"); !strings.Contains(s, "signed out") {
		t.Fatalf("logout: %s", s)
	}
	if s := cli(0, "status"); !strings.Contains(s, "not signed in") {
		t.Fatalf("status after logout: %s", s)
	}
	if f := leakscan.Find(all.String()); len(f) > 0 {
		t.Fatalf("the CLI printed secrets: %v", f)
	}
	if st := as.Stats(); st.Revocations == 0 || st.RefreshTokensPresentedTwice != 0 {
		t.Fatalf("server stats: %+v", st)
	}
}

// result is what one run of the program printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// all is everything the run printed.
func (r result) all() string { return r.stdout + r.stderr }

// cliRun runs the program with args, through the test seam when configure
// is non-nil, and fails the test when anything printed looks like a
// secret.
func cliRun(t *testing.T, configure func(*client.Options), args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runWith(t.Context(), args, &out, &errOut, configure)
	r := result{code, out.String(), errOut.String()}
	if f := leakscan.Find(r.all()); len(f) > 0 {
		t.Fatalf("cli %v printed secrets: %v", args, f)
	}
	return r
}

// want fails the test unless r exited with code and printed every one of
// the strings.
func (r result) want(t *testing.T, code int, strs ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range strs {
		if !strings.Contains(r.all(), s) {
			t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", s, r.stdout, r.stderr)
		}
	}
}

// memoryStore keeps tokens in process memory for the test, with no
// keychain or file touched.
func memoryStore(t *testing.T) { t.Setenv("TOKENWARD_STORE", "memory") }

// fileStore keeps tokens in an encrypted file under a temporary
// directory, so that they outlive one run of the program.
func fileStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir+"/config")
	t.Setenv("XDG_CACHE_HOME", dir+"/cache")
	t.Setenv("TOKENWARD_STORE", "encrypted-file")
	t.Setenv("TOKENWARD_PASSPHRASE", "correct horse battery staple")
}

// browser returns a configure func whose browser completes the login at
// as, as a person who signs in would.
func browser(as *oauthtest.Server) func(*client.Options) {
	return func(cfg *client.Options) {
		cfg.OpenBrowser = func(u string) error { return as.Browse(context.Background(), u) }
	}
}
