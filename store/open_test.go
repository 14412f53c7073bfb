package store

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

func TestModePrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opt, env string
		want     Mode
		err      error
	}{
		{"", "", ModeKeychain, nil},
		{"", "memory", ModeMemory, nil},
		{"", "plaintext-file", ModePlaintextFile, nil},
		{"memory", "plaintext-file", ModeMemory, nil},
		{"keychain", "memory", ModeKeychain, nil},
		{"", "bogus", "", ErrInvalidConfig},
		{"bogus", "", "", ErrInvalidConfig},
		{"", "Keychain", "", ErrInvalidConfig},
	}
	for _, tt := range tests {
		root := t.TempDir()
		s, err := Open(context.Background(), testOptions(Mode(tt.opt), root+"/d", root+"/l", fakekeychain.New(fakekeychain.Generic)),
			func(o *Options) { o.getenv = func(k string) string { return map[string]string{EnvMode: tt.env}[k] } })
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("opt %q env %q: err = %v, want %v", tt.opt, tt.env, err, tt.err)
			}
			continue
		}
		if err != nil || s.Status().Mode != tt.want {
			t.Errorf("opt %q env %q: %v, %v; want %s", tt.opt, tt.env, s, err, tt.want)
		}
	}
	if _, err := Open(context.Background(), func(o *Options) { o.Mode = ModeMemory; o.Service = "bad:name" }); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad service: %v", err)
	}
}

// isolateHome points HOME and the XDG directories at an empty temporary
// directory, clears the store's variables and the session bus, and puts a
// spawn recorder first on PATH. It returns the home and the recorder's log.
func isolateHome(t *testing.T) (home, spawnLog string) {
	t.Helper()
	root := t.TempDir()
	home = filepath.Join(root, "home")
	bin := filepath.Join(root, "bin")
	os.Mkdir(home, 0o700)
	os.Mkdir(bin, 0o700)
	t.Setenv("HOME", home)
	for _, v := range []string{"XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", EnvMode, EnvPassphrase} {
		t.Setenv(v, "")
	}
	if runtime.GOOS != "windows" {
		var err error
		if spawnLog, err = fakekeychain.InstallSpawnRecorder(bin); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return home, spawnLog
}

func checkNoSpawn(t *testing.T, spawnLog string) {
	t.Helper()
	if spawnLog == "" {
		return
	}
	if b, _ := os.ReadFile(spawnLog); len(b) != 0 {
		t.Fatalf("a child process was started:\n%s", b)
	}
}

// TestDefaultOpenWithoutKeychain: on a Linux machine with no session bus
// and no opt-in, Open fails with ErrUnavailable naming the opt-ins; HOME
// stays empty, and no process (dbus-launch) is started. The probe runs
// with a generous deadline (its one-second one is TestProbeHungBus's
// subject): ErrUnavailable, rather than ErrTimeout, shows that the answer
// came from the missing bus, not from a deadline.
func TestDefaultOpenWithoutKeychain(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("probes the Linux Secret Service; other OSes always have a keychain")
	}
	home, spawnLog := isolateHome(t)
	for _, addr := range []string{"", "autolaunch:", "unix:path=" + filepath.Join(home, "..", "no-such-socket")} {
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
		s, err := Open(context.Background(), func(o *Options) { o.probeTimeout = backstop })
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) || s != nil {
			t.Fatalf("bus %q: Open = %v, %v; want ErrUnavailable", addr, s, err)
		}
		for _, w := range []string{"TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE", "memory", "plaintext-file"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %s", err, w)
			}
		}
		if err := available(context.Background(), backstop); !errors.Is(err, ErrUnavailable) {
			t.Errorf("bus %q: Available = %v", addr, err)
		}
	}
	if files := treeFiles(t, home); len(files) != 0 {
		t.Fatalf("written under HOME: %q", files)
	}
	checkNoSpawn(t, spawnLog)
}

// TestProbeHungBus: a session bus that accepts the connection and never
// answers still gets an answer by the probe's one-second deadline. The
// answer is ErrTimeout, which only the deadline produces (an answer from
// the bus would give nil or ErrUnavailable), so it proves the deadline
// ended the probe without measuring latency; the clock only gets a
// generous backstop. The probe made exactly one connection (no retry, no
// other bus, no dbus-launch), started no process and wrote nothing, and
// its call ended with its deadline (godbus drops the connection when the
// probe's context ends), so the next probe is not refused as hung.
func TestProbeHungBus(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("probes the Linux session bus")
	}
	home, spawnLog := isolateHome(t)
	sock := filepath.Join(home, "..", "bus")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(conns)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c // never answered
		}
	}()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+sock)
	start := time.Now()
	err = Available(context.Background())
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Available = %v, want the probe's ErrTimeout", err)
	}
	if d < probeTimeout || d > probeTimeout+backstop {
		t.Fatalf("Available returned after %v, want its %v deadline (backstop %v)", d, probeTimeout, backstop)
	}
	// Connections are accepted in the order they were made: once a
	// sentinel made now is accepted, every connection of the probe was.
	sentinel, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer sentinel.Close()
	if _, err := sentinel.Write([]byte{'S'}); err != nil {
		t.Fatal(err)
	}
	probeConns := 0
	for c := range conns {
		var b [1]byte
		_, err := io.ReadFull(c, b[:])
		c.Close()
		if err == nil && b[0] == 'S' {
			break
		}
		probeConns++
	}
	l.Close()
	for c := range conns {
		c.Close()
	}
	if probeConns != 1 {
		t.Fatalf("the probe made %d connections to the bus, want 1", probeConns)
	}
	// The abandoned probe ends (it may still be closing its connection).
	probeGuard.sem <- struct{}{}
	<-probeGuard.sem
	if probeGuard.isHung() {
		t.Fatal("the probe guard is still hung after its call returned")
	}
	checkNoSpawn(t, spawnLog)
	if files := treeFiles(t, home); len(files) != 0 {
		t.Fatalf("written under HOME: %q", files)
	}
}

// TestNoChildProcess: storing canary secrets through every mode
// starts no child process at all, so none can see a secret in its argv
// or environment. (macOS's go-keyring does run /usr/bin/security by
// absolute path; the macOS fake records that argv, see TestCanary.)
func TestNoChildProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the spawn recorder needs /bin/sh")
	}
	home, spawnLog := isolateHome(t)
	ctx := context.Background()
	for _, m := range allModes {
		e := newEnv(t, m)
		ent := canaryEntry()
		if err := e.Save(ctx, "k", ent); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Load(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		unlock, err := e.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		if err := e.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	Open(ctx) // the OS keychain, with no bus
	checkNoSpawn(t, spawnLog)
	if files := treeFiles(t, home); len(files) != 0 {
		t.Fatalf("written under HOME: %q", files)
	}
}

// TestOpenLockedKeychain: a Secret Service whose keyring is locked fails
// Open, before any read, with ErrLocked whose message says how to unlock
// and names the opt-ins; nothing is written and no keychain item is
// touched. Where the probe cannot see a lock (the macOS model) Open
// succeeds, and CheckWrite is what finds out before a login.
func TestOpenLockedKeychain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := fakekeychain.NewSecretService()
	f.SetLocked(true)
	root := t.TempDir()
	s, err := Open(ctx, testOptions(ModeKeychain, root+"/data", root+"/locks", f))
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrUnavailable) || s != nil {
		t.Fatalf("Open = %v, %v; want ErrLocked", s, err)
	}
	for _, w := range []string{"unlock", "TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE", "TOKENWARD_STORE=memory"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if c := f.Counts(); c != (fakekeychain.Counts{}) {
		t.Errorf("Open made keychain calls: %+v", c)
	}
	if files := treeFiles(t, root); len(files) != 0 {
		t.Fatalf("files written: %q", files)
	}

	mac := fakekeychain.NewMacOS()
	mac.SetLocked(true)
	s = newEnv(t, onBackend(mac)).Store // Open succeeds on the macOS model
	if err := s.CheckWrite(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("CheckWrite on a locked macOS keychain = %v, want ErrLocked", err)
	}
}

// Without HOME and XDG_CACHE_HOME (a systemd service, some containers) and
// without Options.LockDir, the keychain and file modes fail at Open with
// ErrUnavailable about the lock directory, instead of opening and then
// failing every Save with "OS keychain unavailable" and a suggestion to
// store tokens in plaintext.
func TestOpenWithoutLockDirectory(t *testing.T) {
	if os.Getenv("HOME") == "" && os.Getenv("XDG_CACHE_HOME") == "" {
		t.Log("HOME already unset")
	}
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	if _, err := os.UserCacheDir(); err == nil {
		t.Skip("this OS has a user cache directory without HOME")
	}
	ctx := context.Background()
	dir := t.TempDir()
	for _, mode := range []Mode{ModeKeychain, ModeEncryptedFile, ModePlaintextFile} {
		fake := fakekeychain.New(fakekeychain.Generic)
		s, err := Open(ctx, func(o *Options) {
			testOptions(mode, filepath.Join(dir, string(mode)), "", fake)(o)
		})
		if err == nil {
			err = s.Save(ctx, "k", &Entry{AccessToken: "a", Expiry: time.Now().Add(time.Hour)})
			t.Errorf("%s: Open succeeded without a lock directory (then Save: %v)", mode, err)
			continue
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Open = %v, want ErrUnavailable", mode, err)
		}
		msg := err.Error()
		for _, w := range []string{"lock directory", "Options.LockDir"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not mention %q", mode, msg, w)
			}
		}
		for _, w := range []string{"plaintext", "OS keychain unavailable", "TOKENWARD_STORE"} {
			if strings.Contains(msg, w) {
				t.Errorf("%s: error %q suggests another storage mode (%q)", mode, msg, w)
			}
		}
		if c := fake.Counts(); c.Set != 0 {
			t.Errorf("%s: %d keychain writes", mode, c.Set)
		}
	}
	// Memory mode needs no lock directory; an explicit LockDir is enough.
	if _, err := Open(ctx, testOptions(ModeMemory, "", "", nil)); err != nil {
		t.Errorf("memory: %v", err)
	}
	s, err := Open(ctx, testOptions(ModeKeychain, "", filepath.Join(dir, "locks"), fakekeychain.New(fakekeychain.Generic)))
	if err != nil {
		t.Fatalf("keychain with LockDir: %v", err)
	}
	if err := s.Save(ctx, "k", &Entry{AccessToken: "a"}); err != nil {
		t.Fatalf("keychain with LockDir: Save: %v", err)
	}
}

// TestOpenNoBus: a keychain without a bus fails
// Open with ErrUnavailable naming the opt-ins, and nothing is written.
func TestOpenNoBus(t *testing.T) {
	t.Parallel()
	f := fakekeychain.NewSecretService()
	f.SetNoBus(true)
	root := t.TempDir()
	s, err := Open(context.Background(), testOptions(ModeKeychain, root+"/data", root+"/locks", f))
	if !errors.Is(err, ErrUnavailable) || s != nil {
		t.Fatalf("Open = %v, %v; want ErrUnavailable", s, err)
	}
	for _, w := range []string{"encrypted-file", "memory", "plaintext-file", "TOKENWARD_STORE"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	if files := treeFiles(t, root); len(files) != 0 {
		t.Fatalf("files written: %q", files)
	}
}
