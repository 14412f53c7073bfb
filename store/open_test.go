package store

import (
	"context"
	"errors"
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
		{"", "bogus", "", ErrInvalidOption},
		{"bogus", "", "", ErrInvalidOption},
		{"", "Keychain", "", ErrInvalidOption},
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
	if _, err := Open(context.Background(), func(o *Options) { o.Mode = ModeMemory; o.Service = "bad:name" }); !errors.Is(err, ErrInvalidOption) {
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

// TestDefaultOpenWithoutKeychain (acceptance 4, 5, K-07, S-01): on a Linux
// machine with no session bus and no opt-in, Open fails within a second
// with ErrUnavailable naming the opt-ins; HOME stays empty, and no process
// (dbus-launch) is started.
func TestDefaultOpenWithoutKeychain(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("probes the Linux Secret Service; other OSes always have a keychain")
	}
	home, spawnLog := isolateHome(t)
	for _, addr := range []string{"", "autolaunch:", "unix:path=" + filepath.Join(home, "..", "no-such-socket")} {
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
		start := time.Now()
		s, err := Open(context.Background())
		if d := time.Since(start); d > time.Second {
			t.Errorf("bus %q: Open took %v", addr, d)
		}
		if !errors.Is(err, ErrUnavailable) || s != nil {
			t.Fatalf("bus %q: Open = %v, %v; want ErrUnavailable", addr, s, err)
		}
		for _, w := range []string{"TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE", "memory", "plaintext-file"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %s", err, w)
			}
		}
		if err := Available(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Errorf("bus %q: Available = %v", addr, err)
		}
	}
	if files := treeFiles(t, home); len(files) != 0 {
		t.Fatalf("written under HOME: %q", files)
	}
	checkNoSpawn(t, spawnLog)
}

// TestProbeHungBus: a session bus that accepts the connection and never
// answers still gets an answer within 1 s (+100 ms).
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
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // never answered
		}
	}()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+sock)
	start := time.Now()
	err = Available(context.Background())
	d := time.Since(start)
	if err == nil || !(errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout)) {
		t.Fatalf("Available = %v, want ErrUnavailable or ErrTimeout", err)
	}
	if d > probeTimeout+100*time.Millisecond {
		t.Fatalf("Available took %v", d)
	}
	l.Close()
	<-accepted
	for _, c := range conns {
		c.Close()
	}
	// Wait for the abandoned probe to finish, so later probes start afresh.
	probeGuard.sem <- struct{}{}
	<-probeGuard.sem
	checkNoSpawn(t, spawnLog)
	if files := treeFiles(t, home); len(files) != 0 {
		t.Fatalf("written under HOME: %q", files)
	}
}

// TestNoChildProcess (K-05): storing canary secrets through every mode
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
