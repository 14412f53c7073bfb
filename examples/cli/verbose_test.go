package main

import (
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
)

// --verbose logs what happens to stderr through log/slog, and no token,
// client secret or passphrase reaches it: a confidential client signs in,
// calls the API and signs out with -v, and everything printed is scanned
// for the exact secrets and for anything token-shaped.
func TestVerboseLeaksNoSecret(t *testing.T) {
	const secret = "canary-client-secret-7f3a9c"
	const passphrase = "canary-passphrase-19b2"
	as := oauthtest.Start(t, oauthtest.Config{IDToken: true, Subject: "ada", Clients: []oauthtest.Client{{
		ID: "conf", Secret: secret, RedirectURIs: []string{"http://127.0.0.1/callback"},
	}}})
	api := oauthtest.StartAPI(t, as, "")
	fileStore(t)
	t.Setenv("TOKENWARD_PASSPHRASE", passphrase)
	t.Setenv("TOKENWARD_CLIENT_SECRET", secret)
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "conf", "--resource", api.Resource()}

	var all strings.Builder
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"-v", "login"}, "signed in as ada"},
		{[]string{"--verbose", "status"}, "signed in as ada"},
		{[]string{"status", "-v"}, "signed in as ada"},
		{[]string{"-v", "call", "/me"}, `"sub":"ada"`},
		{[]string{"-v", "logout"}, "signed out"},
	} {
		r := cliRun(t, browser(as), append(base, step.args...)...)
		r.want(t, 0, step.want)
		all.WriteString(r.all())
	}
	out := all.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("--verbose logged nothing:\n%s", out)
	}
	exact := append([]string{secret, passphrase}, api.Tokens()...)
	if len(api.Tokens()) == 0 {
		t.Fatal("the API saw no token")
	}
	if f := leakscan.Find(out, exact...); len(f) > 0 {
		t.Fatalf("--verbose printed secrets: %v", f)
	}
}
