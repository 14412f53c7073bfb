package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
)

// assertTerminalSafe fails when out holds anything a terminal could act on:
// a control character other than a line break, a C1 control, a format
// character (bidi controls), invalid UTF-8.
func assertTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("%s is not valid UTF-8: %q", what, out)
	}
	for _, r := range out {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || unicode.Is(unicode.Cf, r) {
			t.Fatalf("%s holds %U:\n%q", what, r, out)
		}
	}
}

// Text from the server reaches the terminal escaped: a subject (from the ID
// token) carrying an 8-bit CSI (in UTF-8) and a bidi override, printed by
// login and status; an error_description carrying C1 controls and bidi
// overrides, printed with the error. (C0 controls such as ESC are already
// dropped or replaced before the text reaches the CLI.)
func TestCLIEscapesServerText(t *testing.T) {
	const subject = "\u009b2J\u009d8;;https://evil.example\u009cgrace\u202e"
	t.Run("subject", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{DeviceInterval: time.Second, IDToken: true, Subject: subject})
		dir := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", dir+"/config")
		t.Setenv("XDG_CACHE_HOME", dir+"/cache")
		t.Setenv("TOKENWARD_STORE", "encrypted-file")
		t.Setenv("TOKENWARD_PASSPHRASE", "correct horse battery staple")
		args := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "--scopes", "openid read"}
		for _, cmd := range [][]string{{"login", "--device"}, {"status"}} {
			var out, errOut bytes.Buffer
			if code := run(t.Context(), append(args, cmd...), &out, &errOut); code != 0 {
				t.Fatalf("cli %v = %d\nstderr: %s", cmd, code, errOut.String())
			}
			assertTerminalSafe(t, "cli "+cmd[0]+" output", out.String()+errOut.String())
			if want := `signed in as \u009b2J\u009d8;;https://evil.example\u009cgrace\u202e`; !strings.Contains(out.String(), want) {
				t.Fatalf("cli %v printed %q, want it to contain %q", cmd, out.String(), want)
			}
			if f := leakscan.Find(out.String() + errOut.String()); len(f) > 0 {
				t.Fatalf("the CLI printed secrets: %v", f)
			}
		}
	})
	t.Run("error description", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{})
		as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointDeviceAuthorization,
			Code: "invalid_scope", Description: "scope \u009b2J\u009d0;pwned\u009c refused \u202eevil\u202c \x1b[31mred"})
		t.Setenv("TOKENWARD_STORE", "memory")
		var out, errOut bytes.Buffer
		code := run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "login", "--device"}, &out, &errOut)
		if code == 0 {
			t.Fatal("login succeeded against a refusing server")
		}
		got := out.String() + errOut.String()
		assertTerminalSafe(t, "the error", got)
		if !strings.Contains(got, `\u009b2J\u009d0;pwned\u009c refused \u202eevil\u202c`) {
			t.Fatalf("the error does not show the description escaped: %q", got)
		}
	})
}

// The API's status line, the one piece of server text the CLI escapes
// itself, shows control characters, bidi overrides and invalid UTF-8 as Go
// escapes; ordinary text, accented letters included, is unchanged.
func TestPrintable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"200 OK":                        "200 OK",
		"418 I'm a teapot":              "418 I'm a teapot",
		"200 Ça va":                     "200 Ça va",
		"200 OK\x1b[2J\rfake":           `200 OK\x1b[2J\rfake`,
		"200 \u009b2J \u202eevil\u202c": `200 \u009b2J \u202eevil\u202c`,
		"200 \xff":                      `200 \xff`,
	} {
		got := printable(in)
		if got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
		assertTerminalSafe(t, "printable's result", got)
	}
	err := escaped{fmt.Errorf("Get \"https://api.example/\u202ex\": %w", context.Canceled)}
	if want := `Get "https://api.example/\u202ex": context canceled`; err.Error() != want || !errors.Is(err, context.Canceled) {
		t.Errorf("escaped error = %q (context.Canceled: %v), want %q and a match", err, errors.Is(err, context.Canceled), want)
	}
}
