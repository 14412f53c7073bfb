package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakeas"
	"github.com/tokenward/tokenward/internal/leakscan"
)

// TestCLI runs login (device flow), status, call, logout against the fake
// server, with tokens kept in an encrypted file (the opt-in for headless
// machines) in a temporary directory, and scans everything printed for
// tokens.
func TestCLI(t *testing.T) {
	as := fakeas.Start(t, fakeas.Config{DeviceInterval: time.Second, IDToken: true, Subject: "grace"})
	api := fakeas.StartAPI(t, as, "")
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir+"/config")
	t.Setenv("XDG_CACHE_HOME", dir+"/cache")
	t.Setenv("TOKENWARD_STORE", "encrypted-file")
	t.Setenv("TOKENWARD_PASSPHRASE", "correct horse battery staple")
	t.Setenv("TOKENWARD_ISSUER", as.Issuer())
	t.Setenv("TOKENWARD_CLIENT_ID", fakeas.DefaultClientID)
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
	if s := cli(1, "call", api.URL()+"/me"); !strings.Contains(s, "cli login") {
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

// TestCLIHints checks the helpful errors for common mistakes.
func TestCLIHints(t *testing.T) {
	as := fakeas.Start(t, fakeas.Config{})
	t.Setenv("TOKENWARD_STORE", "memory")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--issuer", as.Issuer(), "--client-id", "x", "status"}, "--allow-insecure-loopback"},
		{[]string{"--allow-insecure-loopback", "--issuer", as.Issuer() + "/", "--client-id", "x", "status"}, "exact issuer URL"},
		{[]string{"--allow-insecure-loopback", "--issuer", "http://127.0.0.1:1", "--client-id", "x", "status"}, "check --issuer"},
		{[]string{"status"}, "--issuer and --client-id are required"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), c.args, &out, &errOut); code == 0 {
			t.Fatalf("%v succeeded", c.args)
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errOut.String(), c.want)
		}
	}
	t.Setenv("TOKENWARD_STORE", "")
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	var out, errOut bytes.Buffer
	run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x", "status"}, &out, &errOut)
	if !strings.Contains(errOut.String(), "TOKENWARD_STORE=encrypted-file") {
		t.Errorf("no keychain: stderr %q does not name the opt-in", errOut.String())
	}
}

// TestCLICallRefusesOtherOrigins: the token never goes to a URL outside the
// configured origins, whatever the user types.
func TestCLICallRefusesOtherOrigins(t *testing.T) {
	as := fakeas.Start(t, fakeas.Config{})
	api := fakeas.StartAPI(t, as, "")
	other := fakeas.StartAPI(t, as, "")
	tok, err := as.Mint(fakeas.Grant{Resources: []string{api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENWARD_ACCESS_TOKEN", tok.AccessToken)
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x",
		"--resource", api.Resource(), "call", other.URL() + "/steal"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "not an API origin") {
		t.Fatalf("call to another origin: exit %d, stderr %q", code, errOut.String())
	}
	if n := other.Stats().Calls; n != 0 {
		t.Fatalf("the other origin received %d requests", n)
	}
	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x",
		"--resource", api.Resource(), "call", api.URL() + "/ok"}, &out, &errOut); code != 0 {
		t.Fatalf("call to the API: exit %d, stderr %q", code, errOut.String())
	}
}
