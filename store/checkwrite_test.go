package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestCheckWrite: in every mode CheckWrite passes on a working store and
// touches no entry: a stored entry is still there, byte for byte, and
// nothing of the check is left behind (no keychain item, no file). The
// keychain check writes, reads back and deletes one item of its own.
func TestCheckWrite(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, m)
			ent := canaryEntry()
			if err := e.Save(ctx, "k", ent); err != nil {
				t.Fatal(err)
			}
			var users []string
			var files []string
			if e.fake != nil {
				users = e.fake.Users(defaultService)
				e.fake.ResetCounts()
			} else if m.mode != ModeMemory {
				files = treeFiles(t, filepath.Dir(e.dir))
			}
			for range 3 {
				if err := e.CheckWrite(ctx); err != nil {
					t.Fatalf("CheckWrite = %v", err)
				}
			}
			got, err := e.Load(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			mustEqualEntry(t, got, ent)
			if e.fake != nil {
				if after := e.fake.Users(defaultService); fmt.Sprint(after) != fmt.Sprint(users) {
					t.Fatalf("items %q after the checks, want %q", after, users)
				}
				// Each check: one write, a read back, one delete (the
				// Load above adds its own reads).
				if c := e.fake.Counts(); c.Set != 3 || c.Delete != 3 {
					t.Fatalf("counts %+v, want 3 writes and 3 deletes", c)
				}
			} else if m.mode != ModeMemory {
				if after := treeFiles(t, filepath.Dir(e.dir)); fmt.Sprint(after) != fmt.Sprint(files) {
					t.Fatalf("files %q after the checks, want %q", after, files)
				}
			}
		})
	}
}

// TestCheckWriteLocked: on a locked keychain CheckWrite fails the way
// Save would (ErrLocked; Windows reports a session without a credential
// store as unavailable), leaves no item and, having failed on the
// keychain, creates nothing on disk, not even the lock directory.
func TestCheckWriteLocked(t *testing.T) {
	t.Parallel()
	want := map[fakekeychain.Model]error{
		fakekeychain.Windows: ErrUnavailable, fakekeychain.MacOS: ErrLocked,
		fakekeychain.SecretService: ErrLocked, fakekeychain.Generic: ErrLocked,
	}
	for _, m := range keychainModels {
		e := newEnv(t, keychainMode(m))
		e.fake.SetLocked(true)
		ctx := context.Background()
		err := e.CheckWrite(ctx)
		if !errors.Is(err, want[m]) || !strings.HasPrefix(err.Error(), "store: check write: ") {
			t.Errorf("%v: CheckWrite = %v, want %v", m, err, want[m])
		}
		if errors.Is(err, want[m]) && errors.Is(err, ErrLocked) && errors.Is(err, ErrUnavailable) {
			t.Errorf("%v: %v matches two kinds", m, err)
		}
		e.fake.SetLocked(false)
		if users := e.fake.Users(defaultService); len(users) != 0 {
			t.Errorf("%v: items left: %q", m, users)
		}
		if files := append(treeFiles(t, e.dir), treeFiles(t, e.lockDir)...); len(files) != 0 {
			t.Errorf("%v: files written: %q", m, files)
		}
		if _, err := os.Stat(e.lockDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the lock directory was created: %v", m, err)
		}
		if err := e.CheckWrite(ctx); err != nil {
			t.Errorf("%v: CheckWrite once unlocked = %v", m, err)
		}
	}
}

// TestCheckWriteHung (synctest): a keychain whose unlock prompt is never
// answered makes CheckWrite return ErrTimeout at the store's deadline, and
// later calls fail fast, as Save does.
func TestCheckWriteHung(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, keychainMode(fakekeychain.SecretService))
		release := e.fake.Block()
		defer release()
		start := time.Now()
		if err := e.CheckWrite(context.Background()); !errors.Is(err, ErrTimeout) {
			t.Fatalf("CheckWrite = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != defaultTimeout {
			t.Fatalf("CheckWrite returned after %v, want the %v deadline", d, defaultTimeout)
		}
		if err := e.CheckWrite(context.Background()); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), errHung) {
			t.Fatalf("second CheckWrite = %v, want the fail-fast ErrTimeout", err)
		}
		if c := e.fake.Counts(); c.Set != 1 || c.Get != 0 {
			t.Fatalf("counts %+v: want the one blocked write and nothing more", c)
		}
		release()
		synctest.Wait()
		if err := e.CheckWrite(context.Background()); err != nil {
			t.Fatalf("CheckWrite after the prompt was answered = %v", err)
		}
		if users := e.fake.Users(defaultService); len(users) != 0 {
			t.Fatalf("items left: %q", users)
		}
	})
}

// TestCheckWriteDirectories: the file modes refuse a store directory that
// group or others can access, as Save does; every mode but memory needs a
// lock directory it can create files in, and says so when it cannot.
func TestCheckWriteDirectories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, m := range fileModes() {
		e := newEnv(t, m)
		if err := os.Chmod(e.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := e.CheckWrite(ctx); !errors.Is(err, ErrInsecurePermissions) {
			t.Errorf("%s: CheckWrite with a 0755 directory = %v, want ErrInsecurePermissions", m.name, err)
		}
		os.Chmod(e.dir, 0o700)
	}
	for _, m := range allModes {
		if m.mode == ModeMemory {
			continue
		}
		root := t.TempDir()
		notADir := filepath.Join(root, "locks")
		if err := os.WriteFile(notADir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, m, func(o *Options) { o.LockDir = notADir })
		err := e.CheckWrite(ctx)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "lock directory") {
			t.Errorf("%s: CheckWrite with a file as lock directory = %v, want ErrUnavailable about the lock directory", m.name, err)
		}
		if e.fake != nil {
			if users := e.fake.Users(defaultService); len(users) != 0 {
				t.Errorf("%s: items left: %q", m.name, users)
			}
		}
	}
}

// TestCheckWriteConcurrent: checks of several processes (stores) on one
// keychain at once never see each other's items: each writes and deletes
// one of its own.
func TestCheckWriteConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, keychainMode(fakekeychain.SecretService))
	var wg sync.WaitGroup
	for range 4 {
		s := e.reopen(t)
		wg.Go(func() {
			for range 10 {
				if err := s.CheckWrite(context.Background()); err != nil {
					t.Errorf("CheckWrite = %v", err)
				}
			}
		})
	}
	wg.Wait()
	if users := e.fake.Users(defaultService); len(users) != 0 {
		t.Fatalf("items left: %q", users)
	}
}

// TestCheckWriteCanceled: a canceled context is context.Canceled in every
// mode, memory included.
func TestCheckWriteCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, m := range allModes {
		e := newEnv(t, m)
		if err := e.CheckWrite(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: CheckWrite = %v, want context.Canceled", m.name, err)
		}
	}
}
