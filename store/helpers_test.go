package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// testMode is one way of storing entries that "every mode" tests cover.
type testMode struct {
	name  string
	mode  Mode
	model fakekeychain.Model // keychain modes only
}

var allModes = []testMode{
	{"keychain-windows", ModeKeychain, fakekeychain.Windows},
	{"keychain-macos", ModeKeychain, fakekeychain.MacOS},
	{"keychain-secretservice", ModeKeychain, fakekeychain.SecretService},
	{"keychain-generic", ModeKeychain, fakekeychain.Generic},
	{"encrypted-file", ModeEncryptedFile, 0},
	{"plaintext-file", ModePlaintextFile, 0},
	{"memory", ModeMemory, 0},
}

// env is a test's store with what it was built from.
type env struct {
	Store
	fake    *fakekeychain.Fake // keychain modes
	dir     string             // Options.Dir
	lockDir string             // Options.LockDir
	opts    []func(*Options)   // to open another store on the same data
}

// testOptions isolates a store from the machine: its own directories, no
// environment, test-sized scrypt.
func testOptions(mode Mode, dir, lockDir string, be Backend) func(*Options) {
	return func(o *Options) {
		o.Mode = mode
		o.Dir = dir
		o.LockDir = lockDir
		o.getenv = func(string) string { return "" }
		o.Passphrase = "correct horse battery staple"
		o.kdfLogN = minLogN
		o.noSync = true           // durability is covered by TestFileDurableWrite
		o.probeTimeout = backstop // a starved machine must not fail the probe of a fake
		if be != nil {
			o.Backend = be
		}
	}
}

func newEnv(t *testing.T, m testMode, more ...func(*Options)) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{dir: filepath.Join(root, "data"), lockDir: filepath.Join(root, "locks")}
	var be Backend
	if m.mode == ModeKeychain {
		e.fake = fakekeychain.New(m.model)
		be = e.fake
	}
	e.opts = append([]func(*Options){testOptions(m.mode, e.dir, e.lockDir, be)}, more...)
	e.Store = e.reopen(t)
	return e
}

// reopen returns a fresh store over the same data (a restarted process).
func (e *env) reopen(t *testing.T) Store {
	t.Helper()
	if e.Store != nil && e.Store.Status().Mode == ModeMemory {
		return e.Store // memory does not outlive its store
	}
	s, err := Open(context.Background(), e.opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// canaryEntry returns an entry whose every secret is a canary.
func canaryEntry() *Entry {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	return &Entry{
		AccessToken:        canary.JWT("at", exp.Unix()),
		TokenType:          "Bearer",
		RefreshToken:       canary.New("rt"),
		Expiry:             exp,
		Scope:              "openid read write",
		IDToken:            canary.JWT("idt", exp.Unix()),
		RefreshTokenExpiry: exp.Add(24 * time.Hour),
		Subject:            "user-123",
		Extra:              map[string]string{"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"},
		KeyPair:            []byte(canary.New("key")),
	}
}

func secretsOf(e *Entry) []string {
	return []string{e.AccessToken, e.RefreshToken, e.IDToken, string(e.KeyPair)}
}

// sizedEntry returns an entry whose encoded form is about n bytes, with
// random (incompressible, unique) tokens.
func sizedEntry(n int) *Entry {
	e := canaryEntry()
	pad := n - 700
	if pad < 1 {
		pad = 1
	}
	raw := make([]byte, pad*3/4+3)
	rand.Read(raw)
	e.AccessToken = base64.RawURLEncoding.EncodeToString(raw)[:pad]
	return e
}

var entryCmp = cmp.Options{cmpopts.EquateEmpty()}

func mustEqualEntry(t *testing.T, got, want *Entry) {
	t.Helper()
	if d := cmp.Diff(want, got, entryCmp); d != "" {
		t.Fatalf("entry mismatch (-want +got):\n%s", d)
	}
}

// logBuffer captures log output for canary scans.
type logBuffer = canary.Log

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// treeFiles lists every file and directory under root (relative paths).
func treeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
