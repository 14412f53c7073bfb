package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/leakscan"
)

// TestQuickstart runs the walkthrough with a shorter stream and checks what
// it claims, and that it prints no token, no client secret and not the
// DPoP key.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	o := defaultOptions()
	o.stream = 7 * time.Second
	o.service = "tokenward-quickstart-test"
	// A canary secret: the leak scan recognises it even in part, like
	// every token the demo server issues.
	o.jobSecret = canary.New("client-secret")
	o.signerSecret = canary.New("signer-secret")
	// The DPoP key is the test's, so the scan can look for it in every
	// form it could be printed in (the JWK "d", hex, PKCS #8).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o.dpopKey = key
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{o.jobSecret, o.signerSecret,
		base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), hex.EncodeToString(d),
		base64.StdEncoding.EncodeToString(pkcs8)}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	if err := run(ctx, &out, o); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"3 API calls -> 200 OK, with 1 token request",
		"logged in as ada@example.com",
		"all 200 OK",
		"requests that waited for a refresh: 0",
		"logged in: false",
		"client.ErrReauthRequired",
		"token type DPoP; API call -> 200 OK",
		"sent as Bearer without the key -> 401",
		"replayed -> 401",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(s, " 0 token refresh(es)") || strings.Contains(s, ", 0 of them in the background") {
		t.Errorf("no background refresh happened:\n%s", s)
	}
	// leakscan finds every token of the demo server (the DPoP-bound one
	// included) by its canary core, DPoP proofs as JWT-shaped strings, and
	// the client secrets and the DPoP key because they are named.
	if f := leakscan.Find(s, secrets...); len(f) > 0 {
		t.Fatalf("quickstart output contains secrets: %v", f)
	}
}

// TestKeychainQuickstart runs the real program (go build, then the binary,
// no flags) inside the keychain suite, against gnome-keyring, and checks it
// exits 0, uses the keychain and leaves no item behind.
func TestKeychainQuickstart(t *testing.T) {
	if os.Getenv("TOKENWARD_KEYCHAIN_SUITE") != "1" {
		t.Skip("keychain suite only (make keychain): needs a Secret Service session")
	}
	bin := filepath.Join(t.TempDir(), "quickstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("quickstart: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Fatalf("quickstart took %v", d)
	}
	all := stdout.String() + stderr.String()
	if !strings.Contains(all, "stored in the OS keychain") {
		t.Fatalf("the keychain was not used:\n%s", all)
	}
	if f := leakscan.Find(all); len(f) > 0 {
		t.Fatalf("output contains secrets: %v", f)
	}
	if n := keychainItems(t, "tokenward-quickstart"); n != 0 {
		t.Fatalf("%d keychain items left behind", n)
	}
}

// TestKeychainQuickstartLocked runs the real program against a Secret
// Service whose login keyring is locked (its own gnome-keyring in a private
// D-Bus session, locked with Service.Lock, which needs no prompt, and no
// display, so no unlock prompt can appear): it must do what the README
// says, say why and keep the tokens in memory, and exit 0.
func TestKeychainQuickstartLocked(t *testing.T) {
	if os.Getenv("TOKENWARD_KEYCHAIN_SUITE") != "1" {
		t.Skip("keychain suite only (make keychain): needs dbus-run-session and gnome-keyring")
	}
	t.Parallel()
	dir, err := os.MkdirTemp("", "tw-qs-") // short: gnome-keyring puts sockets in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "quickstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for _, d := range []string{"data", "runtime", "config", "cache"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, "XDG_"+map[string]string{"data": "DATA_HOME", "runtime": "RUNTIME_DIR", "config": "CONFIG_HOME", "cache": "CACHE_HOME"}[d]+"="+p)
	}
	script := `eval "$(printf tokenward-locked | gnome-keyring-daemon --unlock --components=secrets)"
dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
	org.freedesktop.Secret.Service.Lock array:objpath:/org/freedesktop/secrets/collection/login >/dev/null || exit 99
exec "$0"`
	cmd := exec.CommandContext(t.Context(), "dbus-run-session", "--", "sh", "-c", script, bin)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("quickstart with a locked keyring: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"no usable OS keychain here", "locked", "keeps its tokens in memory", "Done: no token was printed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if f := leakscan.Find(out + stderr.String()); len(f) > 0 {
		t.Fatalf("output contains secrets: %v", f)
	}
}
