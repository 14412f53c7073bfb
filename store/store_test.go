package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// Tests of what every mode shares: the Store methods' contract.

// TestStatus: each mode describes itself: its backend, whether it
// encrypts and persists, and a warning only for plaintext files.
func TestStatus(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		e := newEnv(t, m)
		st := e.Status()
		if st.Mode != m.mode || st.Backend == "" {
			t.Errorf("%s: Status = %+v", m.name, st)
		}
		wantEnc := m.mode == ModeKeychain || m.mode == ModeEncryptedFile
		if st.Encrypted != wantEnc || st.Persistent != (m.mode != ModeMemory) || (st.Warning != "") != (m.mode == ModePlaintextFile) {
			t.Errorf("%s: Status = %+v", m.name, st)
		}
		if m.mode == ModeKeychain && st.Backend != m.model.String() {
			t.Errorf("%s: backend %q", m.name, st.Backend)
		}
	}
}

// TestCanceledContext: a canceled context fails Load and Save with
// context.Canceled in every mode.
func TestCanceledContext(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		e := newEnv(t, m)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.Load(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Load = %v, want context.Canceled", m.name, err)
		}
		if err := e.Save(ctx, "k", &Entry{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Save = %v, want context.Canceled", m.name, err)
		}
	}
}

// TestConcurrentUse: every mode is safe for concurrent use (-race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 10 {
						name := fmt.Sprint("n", (g+i)%3)
						want := &Entry{AccessToken: fmt.Sprint("at-", g, "-", i), Subject: name}
						if err := e.Save(ctx, name, want); err != nil {
							t.Error(err)
							return
						}
						got, err := e.Load(ctx, name)
						if err != nil || got.Subject != name {
							t.Errorf("Load(%s) = %v, %v", name, got, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestSameBackend: two handles are one store when Open made both for one
// backend: the same mode, directory or keychain (service and Backend), the
// same lock directory, and for encrypted files the same passphrase. A
// handle with another passphrase on the same directory (it cannot read the
// other's entries), or another lock directory (its writes would not
// exclude the other's), is another store, though its Status is the same.
// A Store that Open did not make is the same only as itself.
func TestSameBackend(t *testing.T) {
	t.Parallel()
	for _, m := range fileModes() {
		e := newEnv(t, m)
		same := func(name string, s Store, want bool) {
			t.Helper()
			if got := SameBackend(e.Store, s); got != want {
				t.Errorf("%s: %s: SameBackend = %v, want %v", m.name, name, got, want)
			}
			if got := SameBackend(s, e.Store); got != want {
				t.Errorf("%s: %s: SameBackend the other way = %v, want %v", m.name, name, got, want)
			}
		}
		same("itself", e.Store, true)
		same("reopened", e.reopen(t), true)
		otherLocks := e.reopen(t, func(o *Options) { o.LockDir = filepath.Join(t.TempDir(), "locks") })
		if otherLocks.Status() != e.Status() {
			t.Fatalf("%s: another lock directory changed the Status", m.name)
		}
		same("another lock directory", otherLocks, false)
		same("another directory", e.reopen(t, func(o *Options) { o.Dir = filepath.Join(t.TempDir(), "data") }), false)
		if m.mode == ModeEncryptedFile {
			otherPass := e.reopen(t, func(o *Options) { o.Passphrase = "another passphrase" })
			if otherPass.Status() != e.Status() {
				t.Fatalf("another passphrase changed the Status")
			}
			same("another passphrase", otherPass, false)
			same("plaintext files in the same directory", e.reopen(t, func(o *Options) { o.Mode = ModePlaintextFile }), false)
		}
	}

	fake := fakekeychain.New(fakekeychain.SecretService)
	kc := newEnv(t, onBackend(fake))
	for _, tt := range []struct {
		name string
		s    Store
		want bool
	}{
		{"keychain reopened", kc.reopen(t), true},
		{"keychain on another backend", kc.reopen(t, func(o *Options) { o.Backend = fakekeychain.New(fakekeychain.SecretService) }), false},
		{"keychain under another service", kc.reopen(t, func(o *Options) { o.Service = "another-service" }), false},
		{"keychain with another lock directory", kc.reopen(t, func(o *Options) { o.LockDir = filepath.Join(t.TempDir(), "locks") }), false},
	} {
		if got := SameBackend(kc.Store, tt.s); got != tt.want {
			t.Errorf("%s: SameBackend = %v, want %v", tt.name, got, tt.want)
		}
	}

	mem1, mem2 := newEnv(t, memoryMode), newEnv(t, memoryMode)
	if !SameBackend(mem1.Store, mem1.Store) || SameBackend(mem1.Store, mem2.Store) {
		t.Error("memory stores: each is the same only as itself")
	}
	wrapped := struct{ Store }{kc.Store}
	if SameBackend(wrapped, kc.Store) || !SameBackend(wrapped, wrapped) {
		t.Error("a Store Open did not make: the same only as itself")
	}
	// A Store value of a type == cannot compare must not panic.
	odd := uncomparableStore{Store: kc.Store}
	if SameBackend(odd, odd) || SameBackend(odd, kc.Store) || SameBackend(nil, kc.Store) {
		t.Error("an uncomparable Store value matched")
	}
}

// uncomparableStore is a Store value that == cannot compare.
type uncomparableStore struct {
	Store
	_ []int
}
