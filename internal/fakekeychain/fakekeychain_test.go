package fakekeychain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/zalando/go-keyring"
)

func TestWindowsBlobLimit(t *testing.T) {
	t.Parallel()
	f := NewWindows()
	if err := f.Set("svc", "u", strings.Repeat("x", WindowsMaxBlob)); err != nil {
		t.Fatalf("Set at the limit: %v", err)
	}
	if err := f.Set("svc", "u", strings.Repeat("x", WindowsMaxBlob+1)); !errors.Is(err, keyring.ErrSetDataTooBig) {
		t.Fatalf("Set over the limit: got %v, want ErrSetDataTooBig", err)
	}
	if got, _ := f.Get("svc", "u"); len(got) != WindowsMaxBlob {
		t.Fatalf("a refused write changed the item: len %d", len(got))
	}
	if err := f.Set(strings.Repeat("s", WindowsMaxService), "u", "x"); !errors.Is(err, keyring.ErrSetDataTooBig) {
		t.Fatalf("long service: got %v, want ErrSetDataTooBig", err)
	}
}

func TestWindowsTargetNameAmbiguity(t *testing.T) {
	t.Parallel()
	f := NewWindows()
	if err := f.Set("a:b", "c", "first"); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("a", "b:c", "second"); err != nil {
		t.Fatal(err)
	}
	// The Windows model joins service and user with a colon, so both are
	// the credential "a:b:c".
	if got, _ := f.Get("a:b", "c"); got != "second" {
		t.Fatalf("Get(a:b, c) = %q, want the aliasing write %q", got, "second")
	}
	if n := len(f.Items()); n != 1 {
		t.Fatalf("%d items, want 1", n)
	}
	// The other models keep them apart.
	g := New(Generic)
	g.Set("a:b", "c", "first")
	g.Set("a", "b:c", "second")
	if got, _ := g.Get("a:b", "c"); got != "first" {
		t.Fatalf("generic model aliased: %q", got)
	}
}

// TestMacOSLineBoundary sweeps the length of the line go-keyring writes to
// `security -i` across 4090..4100 bytes, around the size of the line
// buffer of security: up to 4095 the item is stored, at exactly 4096 Set
// returns nil but stores nothing (go-keyring#153), above it go-keyring
// refuses with ErrSetDataTooBig.
func TestMacOSLineBoundary(t *testing.T) {
	t.Parallel()
	for want := 4090; want <= 4100; want++ {
		t.Run(fmt.Sprint(want), func(t *testing.T) {
			t.Parallel()
			user, secret := commandOfLength(t, "svc", want)
			f := NewMacOS()
			err := f.Set("svc", user, secret)
			got, gerr := f.Get("svc", user)
			switch {
			case want <= 4095:
				if err != nil || gerr != nil || got != secret {
					t.Fatalf("Set = %v, Get = (%d bytes, %v); want the item stored", err, len(got), gerr)
				}
			case want == 4096:
				if err != nil {
					t.Fatalf("Set = %v; want the silent nil of go-keyring#153", err)
				}
				if !errors.Is(gerr, keyring.ErrNotFound) {
					t.Fatalf("Get = (%d bytes, %v); want not found: the write must be dropped", len(got), gerr)
				}
			default:
				if !errors.Is(err, keyring.ErrSetDataTooBig) {
					t.Fatalf("Set = %v; want ErrSetDataTooBig", err)
				}
			}
		})
	}
}

// commandOfLength finds a user name and an ASCII secret for which the
// security -i line is exactly n bytes.
func commandOfLength(t *testing.T, service string, n int) (user, secret string) {
	t.Helper()
	// The base64 of the secret grows 4 bytes per 3 secret bytes; the user
	// name (safe characters, unquoted) fills in the last 0-3 bytes.
	for sl := 2700; sl < 3200; sl += 3 {
		s := strings.Repeat("s", sl)
		if l := len(MacOSCommand(service, "u", s)); l <= n && n-l < 4 {
			u := strings.Repeat("u", 1+n-l)
			if len(MacOSCommand(service, u, s)) != n {
				t.Fatalf("length arithmetic is off for %d", n)
			}
			return u, s
		}
	}
	t.Fatalf("no command of length %d", n)
	return "", ""
}

func TestMacOSCommandMatchesGoKeyring(t *testing.T) {
	t.Parallel()
	// The line go-keyring v0.2.8 builds for these inputs.
	got := MacOSCommand("svc", "it's", "pw")
	want := "add-generic-password -U -s svc -a 'it'\"'\"'s' -w go-keyring-base64:cHc=\n"
	if got != want {
		t.Fatalf("MacOSCommand = %q, want %q", got, want)
	}
}

func TestMacOSNameMangling(t *testing.T) {
	t.Parallel()
	f := NewMacOS()
	// security's tokenizer drops the backslash, so the item lands under "ab".
	if err := f.Set("svc", `a\b`, "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get("svc", `a\b`); !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("Get(a\\b) = %v, want not found (renamed on write)", err)
	}
	if got, _ := f.Get("svc", "ab"); got != "pw" {
		t.Fatalf("Get(ab) = %q, want the renamed item", got)
	}
	for _, user := range []string{"it's", "two\nlines"} {
		var ee *ExitError
		if err := f.Set("svc", user, "pw"); !errors.As(err, &ee) {
			t.Errorf("Set(%q) = %v, want a usage error exit status", user, err)
		}
	}
	argv := f.Argv()
	if len(argv) == 0 || argv[0][0] != "/usr/bin/security" {
		t.Fatalf("argv not recorded: %q", argv)
	}
	for _, a := range argv {
		if strings.Contains(strings.Join(a, " "), "pw") {
			t.Fatalf("secret in argv %q", a)
		}
	}
}

func TestLockedAndNoBus(t *testing.T) {
	t.Parallel()
	for _, m := range []Model{Generic, Windows, MacOS, SecretService} {
		f := New(m)
		f.Set("s", "u", "v")
		f.SetLocked(true)
		if _, err := f.Get("s", "u"); err == nil {
			t.Errorf("%v: Get on a locked keychain succeeded", m)
		}
		if err := f.Set("s", "u", "w"); err == nil {
			t.Errorf("%v: Set on a locked keychain succeeded", m)
		}
		f.SetLocked(false)
		if got, _ := f.Get("s", "u"); got != "v" {
			t.Errorf("%v: after unlock Get = %q", m, got)
		}
	}
	f := NewSecretService()
	f.SetNoBus(true)
	if err := f.Available(context.Background()); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("Available without a bus = %v, want a dial error", err)
	}
	if _, err := f.Get("s", "u"); err == nil {
		t.Fatal("Get without a bus succeeded")
	}
}

func TestCrashAfter(t *testing.T) {
	t.Parallel()
	for _, lands := range []bool{false, true} {
		f := New(Generic)
		f.CrashAfter(2, lands)
		if err := f.Set("s", "a", "1"); err != nil {
			t.Fatal(err)
		}
		if err := f.Set("s", "b", "2"); !errors.Is(err, ErrCrashed) {
			t.Fatalf("second write = %v, want ErrCrashed", err)
		}
		if _, err := f.Get("s", "a"); !errors.Is(err, ErrCrashed) {
			t.Fatalf("call after the crash = %v, want ErrCrashed", err)
		}
		f.Recover()
		_, err := f.Get("s", "b")
		if landed := err == nil; landed != lands {
			t.Fatalf("lands=%v: write landed = %v", lands, landed)
		}
	}
}

func TestBlockAndHook(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := New(SecretService)
		release := f.Block()
		done := make(chan error)
		go func() {
			_, err := f.Get("s", "u")
			done <- err
		}()
		synctest.Wait()
		if f.Blocked() != 1 {
			t.Fatalf("Blocked = %d, want 1", f.Blocked())
		}
		select {
		case <-done:
			t.Fatal("call returned while blocked")
		default:
		}
		release()
		release() // idempotent
		if err := <-done; !errors.Is(err, keyring.ErrNotFound) {
			t.Fatalf("released call = %v", err)
		}
	})
	f := New(Generic)
	boom := errors.New("boom")
	f.SetHook(func(c Call) error {
		if c.Op == OpSet {
			return boom
		}
		return nil
	})
	if err := f.Set("s", "u", "v"); !errors.Is(err, boom) {
		t.Fatalf("hooked Set = %v", err)
	}
	if c := f.Counts(); c.Set != 1 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := NewWindows()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			u := fmt.Sprint("u", i)
			for j := range 50 {
				f.Set("s", u, fmt.Sprint(j))
				f.Get("s", u)
			}
			f.Delete("s", u)
		})
	}
	wg.Wait()
	if c := f.Counts(); c.Set != 1000 || c.Get != 1000 || c.Delete != 20 {
		t.Fatalf("counts = %+v", c)
	}
	if len(f.Items()) != 0 {
		t.Fatalf("items left: %d", len(f.Items()))
	}
}

func TestSpawnRecorder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the spawn recorder uses /bin/sh")
	}
	t.Parallel()
	dir := t.TempDir()
	log, err := InstallSpawnRecorder(dir, "security")
	if err != nil {
		t.Fatal(err)
	}
	if err := runProgram(filepath.Join(dir, "security"), "add", "arg two"); err == nil {
		t.Fatal("recorder exited 0")
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "argv: "+filepath.Join(dir, "security")+" add arg two") {
		t.Fatalf("log = %q", b)
	}
}
