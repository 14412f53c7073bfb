package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// deviceRewrite forwards requests to base and replaces members of the
// device authorization response: a server sending what the test needs.
type deviceRewrite struct {
	base http.RoundTripper
	set  map[string]any
}

// RoundTrip forwards req and rewrites a device authorization answer.
func (d deviceRewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := d.base.RoundTrip(req)
	if err != nil || req.URL.Path != oauthtest.PathDeviceAuthorization || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range d.set {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// deviceLoginShowing runs a device login, inside a synctest bubble, against
// an in-memory fake server whose device authorization response has the
// members of set replaced. It returns what the default prompt printed.
func deviceLoginShowing(t *testing.T, set map[string]any) (*oauthtest.Server, string, error) {
	t.Helper()
	as, err := oauthtest.New(oauthtest.Config{InMemory: true, DeviceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	st, err := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		t.Fatal(err)
	}
	var prompt syncBuffer
	c, err := New(t.Context(), with(Options{
		Issuer: as.Issuer(), ClientID: oauthtest.DefaultClientID, AllowInsecureLoopback: true,
		Store: st, Prompt: &prompt,
		HTTP: HTTPSettings{Transport: deviceRewrite{base: as.Transport(), set: set}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	err = c.Login(t.Context(), WithDevice())
	return as, prompt.String(), err
}

// A device authorization response that would show the user something
// unsafe is refused before anything is printed or polled: an over-long user
// code, a user code with control or invisible characters, an address that
// is not https or holds such characters. The error names the field, not
// its value, and is itself safe to print.
func TestDeviceResponseRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		set      map[string]any
		insecure bool // also ErrInsecureURL
	}{
		{name: "user code too long", set: map[string]any{"user_code": strings.Repeat("B", maxUserCode+1)}},
		{name: "escape in user code", set: map[string]any{"user_code": "BCDF\x1b[2J\x1b]0;pwned\a-GHJK"}},
		{name: "hyperlink in user code", set: map[string]any{"user_code": "\x1b]8;;https://evil.example\x1b\\BCDF-GHJK\x1b]8;;\x1b\\"}},
		{name: "carriage return in user code", set: map[string]any{"user_code": "XXXX-XXXX\rBCDF-GHJK"}},
		{name: "8-bit CSI in user code", set: map[string]any{"user_code": "BCDF\u009b2J-GHJK"}},
		{name: "bidi override in user code", set: map[string]any{"user_code": "BCDF-\u202eKJHG"}},
		{name: "http verification_uri", set: map[string]any{"verification_uri": "http://as.example/device"}, insecure: true},
		{name: "http verification_uri_complete", set: map[string]any{"verification_uri_complete": "http://as.example/device?user_code=BCDF-GHJK"}, insecure: true},
		{name: "bidi override in verification_uri", set: map[string]any{"verification_uri": "https://as.example/\u202eecived"}},
		{name: "C1 control in verification_uri_complete", set: map[string]any{"verification_uri_complete": "https://as.example/device?user_code=\u009b2J"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as, prompt, err := deviceLoginShowing(t, tc.set)
				if !errors.Is(err, ErrBadResponse) {
					t.Fatalf("Login = %v, want ErrBadResponse", err)
				}
				if tc.insecure && !errors.Is(err, ErrInsecureURL) {
					t.Errorf("Login = %v, want it to match ErrInsecureURL too", err)
				}
				if prompt != "" {
					t.Errorf("the prompt printed %q for a refused response", prompt)
				}
				if n := as.Stats().DevicePolls; n != 0 {
					t.Errorf("%d device polls after a refused response", n)
				}
				msg := err.Error()
				if redact.Terminal(msg) != msg {
					t.Errorf("the error %q holds characters unsafe on a terminal", msg)
				}
				if code, _ := tc.set["user_code"].(string); code != "" && strings.Contains(msg, code[:4]) {
					t.Errorf("the error %q shows the user code", msg)
				}
			})
		})
	}
}

// The longest accepted user code is shown in full; an address outside the
// issuer's host gets a warning line first but the login goes on.
func TestDevicePromptSignInAddress(t *testing.T) {
	t.Parallel()
	t.Run("issuer host", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, prompt, err := deviceLoginShowing(t, nil)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if strings.Contains(prompt, "WARNING") || !strings.HasPrefix(prompt, "To sign in, open "+as.Issuer()) {
				t.Fatalf("prompt for an address on the issuer's host:\n%s", prompt)
			}
		})
	})
	t.Run("longest user code", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			code := strings.Repeat("BCDF", maxUserCode/4)
			_, prompt, err := deviceLoginShowing(t, map[string]any{"user_code": code})
			if err != nil {
				t.Fatalf("Login with a %d-character user code: %v", len(code), err)
			}
			if !strings.Contains(prompt, "enter the code "+code+"\n") {
				t.Fatalf("prompt does not show the code in full:\n%s", prompt)
			}
		})
	})
	t.Run("other host", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			_, prompt, err := deviceLoginShowing(t, map[string]any{
				"verification_uri":          "https://phish.example/device",
				"verification_uri_complete": "https://phish.example/device?user_code=BCDF-GHJK",
			})
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			ls := lines(prompt)
			want := "WARNING: this sign-in address is not on 127.0.0.1; make sure you trust it before entering the code"
			if ls[0] != want || strings.Count(prompt, "WARNING") != 1 {
				t.Fatalf("prompt for an address on another host:\n%s\nwant it to start with one line %q", prompt, want)
			}
			if !strings.HasPrefix(ls[1], "To sign in, open https://phish.example/device and enter the code") {
				t.Fatalf("prompt line 2 = %q", ls[1])
			}
		})
	})
}

// Hosts that may serve the sign-in page without a warning: those on the
// site (registrable domain) of the issuer or the device endpoint; not
// look-alikes, other sites under a shared suffix (github.io), or other
// addresses.
func TestOnHosts(t *testing.T) {
	t.Parallel()
	hosts := []string{"login.example.com", "127.0.0.1", "bob.github.io"}
	for host, want := range map[string]bool{
		"login.example.com":          true,
		"LOGIN.Example.com.":         true,
		"device.login.example.com":   true,
		"example.com":                true,
		"com":                        false,
		"www.example.com":            true, // same site (example.com)
		"alice.github.io":            false,
		"evil-example.com":           false,
		"evil-login.example.com":     true, // example.com runs it
		"login-example.com":          false,
		"example.com.evil.net":       false,
		"login.example.com.evil.net": false,
		"xlogin.example.com":         true,
		"127.0.0.1":                  true,
		"127.0.0.2":                  false,
		"0.0.1":                      false,
		"":                           false,
	} {
		if got := onHosts(host, hosts); got != want {
			t.Errorf("onHosts(%q) = %v, want %v", host, got, want)
		}
	}
}
