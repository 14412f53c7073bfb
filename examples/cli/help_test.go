package main

import (
	"strings"
	"testing"
)

// --help, -h and the help command print the commands, flags and
// environment variables on stdout and exit 0, with no issuer configured;
// unknown flags and commands exit 2 with the usage on stderr.
func TestHelp(t *testing.T) {
	t.Setenv("TOKENWARD_ISSUER", "")
	t.Setenv("TOKENWARD_CLIENT_ID", "")
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"login", "--help"}, {"--profile", "work", "status", "-h"}} {
		r := cliRun(t, nil, args...)
		r.want(t, 0)
		if r.stderr != "" {
			t.Errorf("cli %v wrote to stderr: %s", args, r.stderr)
		}
		for _, w := range []string{"login", "status", "call", "logout", "--device", "--force", "--param",
			"-issuer", "-client-id", "-api-origin", "-ca-file", "-login-timeout", "-store", "-verbose",
			"TOKENWARD_ISSUER", "TOKENWARD_CLIENT_ID", "TOKENWARD_CLIENT_SECRET", "TOKENWARD_SCOPES", "TOKENWARD_RESOURCE",
			"TOKENWARD_API_ORIGIN", "TOKENWARD_PROFILE", "TOKENWARD_STORE", "TOKENWARD_PASSPHRASE", "TOKENWARD_ACCESS_TOKEN",
			"TOKENWARD_LOGIN_TIMEOUT", "TOKENWARD_CA_FILE"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("cli %v: the help lacks %q", args, w)
			}
		}
	}
	for _, args := range [][]string{{"--no-such-flag", "status"}, {"frobnicate"}, {}, {"login", "--no-such-flag"}, {"status", "extra"}, {"login", "--param", "novalue"}} {
		r := cliRun(t, nil, args...)
		r.want(t, 2)
		if r.stdout != "" || !strings.Contains(r.stderr, "usage: cli [flags] login") {
			t.Errorf("cli %v: stdout %q, stderr %q; want the usage on stderr only", args, r.stdout, r.stderr)
		}
	}
}
