package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// This file holds the package's test fixtures. newEnv is the one way tests
// get a working store; testOptions is used on its own only by tests whose
// subject is an Open that fails.

// backstop bounds waits that only guard against a hang. It is far above
// any latency a loaded machine could produce, so it never decides a
// result; outcomes and call counts do.
const backstop = 30 * time.Second

// testMode is one way of storing entries: a mode and, for the keychain,
// what stands behind it.
type testMode struct {
	name  string
	mode  Mode
	model fakekeychain.Model // keychain: a new fake of this model, unless backend or real is set
	// backend replaces the new fake: a fake the test keeps, or a wrapper.
	backend Backend
	// real is the OS keychain (through backend when it is set), under a
	// service name of the test's own. Only the TestKeychain* suite uses it.
	real bool
}

var (
	encryptedFileMode = testMode{name: "encrypted-file", mode: ModeEncryptedFile}
	plaintextFileMode = testMode{name: "plaintext-file", mode: ModePlaintextFile}
	memoryMode        = testMode{name: "memory", mode: ModeMemory}
)

// keychainModels are the keychains the fakes imitate.
var keychainModels = []fakekeychain.Model{fakekeychain.Windows, fakekeychain.MacOS, fakekeychain.SecretService, fakekeychain.Generic}

// keychainMode is keychain mode on a new fake of model m.
func keychainMode(m fakekeychain.Model) testMode {
	return testMode{name: m.String(), mode: ModeKeychain, model: m}
}

// onBackend is keychain mode on be, which the test keeps (to block it,
// lock it, count its calls, or share it with another store).
func onBackend(be Backend) testMode {
	return testMode{name: "keychain", mode: ModeKeychain, backend: be}
}

// osKeychain is keychain mode on the real OS keychain, through be when it
// is not nil.
func osKeychain(be Backend) testMode {
	return testMode{name: "os-keychain", mode: ModeKeychain, backend: be, real: true}
}

// allModes are the modes "every mode" tests cover.
var allModes = []testMode{
	{name: "keychain-windows", mode: ModeKeychain, model: fakekeychain.Windows},
	{name: "keychain-macos", mode: ModeKeychain, model: fakekeychain.MacOS},
	{name: "keychain-secretservice", mode: ModeKeychain, model: fakekeychain.SecretService},
	{name: "keychain-generic", mode: ModeKeychain, model: fakekeychain.Generic},
	encryptedFileMode,
	plaintextFileMode,
	memoryMode,
}

// fileModes are the modes that keep entries in files.
func fileModes() []testMode { return []testMode{encryptedFileMode, plaintextFileMode} }

// env is a test's store with what it was built from.
type env struct {
	Store
	fake    *fakekeychain.Fake // the keychain behind the store when it is a fake
	dir     string             // Options.Dir
	lockDir string             // Options.LockDir
	service string             // Options.Service of an OS keychain store
	opts    []func(*Options)   // to open another store on the same data
}

// testOptions isolates a store from the machine: its own directories, no
// environment, test-sized scrypt, and a probe deadline a starved machine
// cannot hit. be, when not nil, is the keychain.
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

// newEnv opens a store of mode m in directories of the test's own, with
// more applied after the test options, and fails the test if it cannot.
func newEnv(t *testing.T, m testMode, more ...func(*Options)) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{dir: filepath.Join(root, "data"), lockDir: filepath.Join(root, "locks")}
	var be Backend
	if m.mode == ModeKeychain {
		be = m.backend // nil with real: the OS keychain
		if be == nil && !m.real {
			be = fakekeychain.New(m.model)
		}
		e.fake, _ = be.(*fakekeychain.Fake)
	}
	e.opts = []func(*Options){testOptions(m.mode, e.dir, e.lockDir, be)}
	if m.real {
		// A service name of its own, so that parallel tests and packages
		// never share items.
		var b [6]byte
		rand.Read(b[:])
		e.service = "tokenward-test-" + hex.EncodeToString(b[:])
		e.opts = append(e.opts, func(o *Options) {
			o.Service = e.service
			o.Timeout = 20 * time.Second // a shared CI machine; hangs are tested with fakes
		})
	}
	e.opts = append(e.opts, more...)
	e.Store = e.reopen(t)
	return e
}

// reopen returns a fresh store over the same data (a restarted process),
// with more applied after the env's options. A memory store is returned
// as it is: its entries do not outlive it.
func (e *env) reopen(t *testing.T, more ...func(*Options)) Store {
	t.Helper()
	if e.Store != nil && e.Store.Status().Mode == ModeMemory {
		return e.Store
	}
	s, err := Open(context.Background(), slices.Concat(e.opts, more)...)
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

// mustEncode returns the stored form of e under name.
func mustEncode(t *testing.T, name string, e *Entry) []byte {
	t.Helper()
	b, err := encodeEntry(name, e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameEntry reports whether a and b encode to the same bytes.
func sameEntry(t *testing.T, a, b *Entry) bool {
	t.Helper()
	return string(mustEncode(t, "x", a)) == string(mustEncode(t, "x", b))
}

// keychainState returns the manifest of name and checks that the fake holds
// exactly the manifest and its chunks: no orphans, nothing else.
func keychainState(t *testing.T, f *fakekeychain.Fake, name string) *manifest {
	t.Helper()
	id := itemID(name)
	users := f.Users(defaultService)
	raw, err := f.Get(defaultService, id)
	if err != nil {
		if len(users) != 0 {
			t.Fatalf("no manifest but items %q", users)
		}
		return nil
	}
	m, err := parseManifest(raw)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	want := []string{id}
	for i := range m.N {
		want = append(want, chunkUser(id, m.Gen, i))
	}
	if fmt.Sprint(sortedCopy(want)) != fmt.Sprint(users) {
		t.Fatalf("items %q, want exactly %q", users, want)
	}
	return m
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
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
