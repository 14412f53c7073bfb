package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// onFirstChunkGet wraps a fake keychain and runs fn once, before the first
// read of a chunk item, inside that read: the moment between a reader's
// manifest read and its chunk reads.
type onFirstChunkGet struct {
	*fakekeychain.Fake
	fired atomic.Bool
	fn    func()
}

func (b *onFirstChunkGet) Get(service, user string) (string, error) {
	if strings.Contains(user, ".g") && b.fired.CompareAndSwap(false, true) {
		b.fn()
	}
	return b.Fake.Get(service, user)
}

// A Load that races a Delete by another process (here: another store over
// the same keychain, deleting between the reader's manifest read and its
// chunk reads) reports ErrNotFound, not ErrCorrupt: the entry is gone, not
// damaged.
func TestLoadRacingDeleteIsNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		prepare func(t *testing.T, other Store, fake *fakekeychain.Fake)
	}{
		{name: "entry deleted"},
		{name: "entry being deleted (tombstone left)", prepare: func(t *testing.T, other Store, fake *fakekeychain.Fake) {
			// Delete crashes after writing the tombstone and deleting
			// the first chunk.
			fake.CrashAfter(2, true)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, keychainMode(fakekeychain.Generic))
			const name = "racing"
			if err := e.Save(ctx, name, sizedEntry(8<<10)); err != nil {
				t.Fatal(err)
			}
			be := &onFirstChunkGet{Fake: e.fake}
			reader, err := Open(ctx, testOptions(ModeKeychain, e.dir, e.lockDir, be))
			if err != nil {
				t.Fatal(err)
			}
			be.fn = func() {
				if tt.prepare != nil {
					tt.prepare(t, e.Store, e.fake)
				}
				err := e.Store.Delete(ctx, name)
				if tt.prepare == nil && err != nil {
					t.Errorf("Delete: %v", err)
				}
				e.fake.Recover()
			}
			got, err := reader.Load(ctx, name)
			if !be.fired.Load() {
				t.Fatal("test setup: no chunk was read")
			}
			if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || got != nil {
				t.Fatalf("Load during another process's Delete = %v, %v; want ErrNotFound", got, err)
			}
		})
	}
}

// A chunk that is really damaged, under a manifest that stays put, is still
// ErrCorrupt.
func TestLoadStableCorruptChunkIsCorrupt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, keychainMode(fakekeychain.Generic))
	if err := e.Save(ctx, "k", sizedEntry(8<<10)); err != nil {
		t.Fatal(err)
	}
	m := keychainState(t, e.fake, "k")
	e.fake.Set(defaultService, chunkUser(itemID("k"), m.Gen, 1), "AAAA")
	if _, err := e.Load(ctx, "k"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
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

// A lock-directory failure after Open (it cannot be created) is reported as
// such too, without the keychain's opt-in advice.
func TestLockDirectoryErrorWording(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	blocker := filepath.Join(root, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, testOptions(ModeKeychain, "", filepath.Join(blocker, "locks"), fakekeychain.New(fakekeychain.Generic)))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Save(ctx, "k", &Entry{AccessToken: "a"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "lock directory") || strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("Save = %v; want ErrUnavailable about the lock directory", err)
	}
}

// An unreadable manifest (garbled, or written by a newer tokenward) is
// overwritten by Save and removed by Delete; both first delete the chunks
// it still owns, so no token fragment stays in the keychain.
func TestUnreadableManifestChunksRemoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Each case turns a valid manifest into an unreadable one.
	cases := []struct {
		name    string
		garble  func(valid string, m *manifest) string
		wantErr error
	}{
		{"newer version", func(v string, _ *manifest) string {
			return strings.Replace(strings.Replace(v, `"v":1`, `"v":2`, 1), `{`, `{"cipher":"future",`, 1)
		}, ErrUnsupportedVersion},
		{"unknown field", func(v string, _ *manifest) string { return strings.Replace(v, `{`, `{"x":1,`, 1) }, ErrCorrupt},
		{"truncated", func(v string, _ *manifest) string { return v[:len(v)/2] }, ErrCorrupt},
		{"out of range", func(v string, m *manifest) string {
			return strings.Replace(v, fmt.Sprintf(`"n":%d`, m.N), fmt.Sprintf(`"n":%d`, maxChunks+5), 1)
		}, ErrCorrupt},
		{"garbage", func(string, *manifest) string { return "\x00garbage" }, ErrCorrupt},
	}
	for _, c := range cases {
		for _, op := range []string{"save", "delete"} {
			t.Run(c.name+"/"+op, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, keychainMode(fakekeychain.Windows))
				const name = "garbled"
				id := itemID(name)
				// Generation 2 of a chunked entry, with a crash leftover
				// of generation 3 (a put that died before its manifest).
				e.Save(ctx, name, sizedEntry(6<<10))
				if err := e.Save(ctx, name, sizedEntry(9<<10)); err != nil {
					t.Fatal(err)
				}
				m := keychainState(t, e.fake, name)
				if m.Gen != 2 || m.N < 2 {
					t.Fatalf("test setup: gen %d, %d chunks", m.Gen, m.N)
				}
				e.fake.Set(defaultService, chunkUser(id, m.Gen+1, 0), "AAAA")
				valid, _ := e.fake.Get(defaultService, id)
				e.fake.Set(defaultService, id, c.garble(valid, m))
				if _, err := e.Load(ctx, name); !errors.Is(err, c.wantErr) {
					t.Fatalf("test setup: Load = %v, want %v", err, c.wantErr)
				}
				switch op {
				case "save":
					want := sizedEntry(5 << 10)
					if err := e.Save(ctx, name, want); err != nil {
						t.Fatalf("Save over the unreadable manifest: %v", err)
					}
					got, err := e.reopen(t).Load(ctx, name)
					if err != nil || !sameEntry(t, got, want) {
						t.Fatalf("Load after Save = %v", err)
					}
					keychainState(t, e.fake, name) // exactly the manifest and its chunks
				case "delete":
					if err := e.Delete(ctx, name); err != nil {
						t.Fatalf("Delete of the unreadable manifest: %v", err)
					}
					if users := e.fake.Users(defaultService); len(users) != 0 {
						t.Fatalf("items left after Delete: %q", users)
					}
				}
			})
		}
	}
}

// Crashes while an unreadable manifest is being replaced or deleted leave
// it in place, so the next Save or Delete finds its chunks again.
func TestUnreadableManifestCrashSafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const name = "garbled"
	for _, op := range []string{"save", "delete"} {
		for n := 1; n <= 12; n++ {
			e := newEnv(t, keychainMode(fakekeychain.Generic))
			if err := e.Save(ctx, name, sizedEntry(9<<10)); err != nil {
				t.Fatal(err)
			}
			raw, _ := e.fake.Get(defaultService, itemID(name))
			e.fake.Set(defaultService, itemID(name), strings.Replace(raw, `"v":1`, `"v":7`, 1))
			e.fake.CrashAfter(n, n%2 == 0)
			s := e.reopen(t)
			if op == "save" {
				s.Save(ctx, name, sizedEntry(5<<10))
			} else {
				s.Delete(ctx, name)
			}
			e.fake.Recover()
			if err := e.reopen(t).Delete(ctx, name); err != nil {
				t.Fatalf("%s, crash at write %d: Delete: %v", op, n, err)
			}
			if users := e.fake.Users(defaultService); len(users) != 0 {
				t.Fatalf("%s, crash at write %d: items left after Delete: %q", op, n, users)
			}
		}
	}
}

func TestSalvageGens(t *testing.T) {
	t.Parallel()
	probes := "{1 0} {2 0} {3 0} {4 0}"
	for _, tt := range []struct {
		raw, want string
		next      uint64
	}{
		{`{"v":2,"gen":9,"n":3,"prev":{"gen":8,"n":5},"new":true}`, "[{9 3} {8 5} {10 0} " + probes + "]", 10},
		{`{"v":1,"gen":9,"n":100000}`, fmt.Sprintf("[{9 %d} {10 0} %s]", maxChunks, probes), 10},
		{`{"v":1,"gen":9,"n":3,"len":`, "[{9 0} {10 0} " + probes + "]", 10},
		{`garbage`, "[" + probes + "]", 1},
		{`{"gen":18446744073709551615}`, "[" + probes + "]", 1},
		{strings.Repeat(`"gen":77,"gen":78,`, 50), "[{77 0} {78 0} {79 0} " + probes + "]", 79},
	} {
		refs, next := salvageGens(tt.raw)
		if got := fmt.Sprint(refs); got != tt.want || next != tt.next {
			t.Errorf("salvageGens(%.40q) = %s, %d; want %s, %d", tt.raw, got, next, tt.want, tt.next)
		}
	}
}

// Lock files are scoped by the keychain service: stores with different
// Service values never wait for each other's locks; the same service (in
// any letter case: Windows compares target names case-insensitively) does.
func TestLockScopedByService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lockDir := t.TempDir()
	open := func(service string) Store {
		s, err := Open(ctx, testOptions(ModeKeychain, "", lockDir, fakekeychain.New(fakekeychain.Generic)),
			func(o *Options) { o.Service = service; o.LockTimeout = 50 * time.Millisecond })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, a2 := open("app-a"), open("app-b"), open("APP-A")
	unlock, err := a.Lock(ctx, "shared name")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// Another service: free at once (a context that has a deadline but
	// is never reached: the lock is taken on the first try).
	if u, err := b.Lock(ctx, "shared name"); err != nil {
		t.Errorf("another service waited for the lock: %v", err)
	} else {
		u()
	}
	// The same service: held.
	if u, err := a2.Lock(ctx, "shared name"); !errors.Is(err, ErrTimeout) {
		if u != nil {
			u()
		}
		t.Errorf("the same service (other case) got the lock: %v", err)
	}
	// File modes share one scope, and do not collide with the keychain's.
	f1, err := Open(ctx, testOptions(ModeEncryptedFile, filepath.Join(t.TempDir(), "d1"), lockDir, nil), func(o *Options) { o.LockTimeout = 50 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	f2, err := Open(ctx, testOptions(ModePlaintextFile, filepath.Join(t.TempDir(), "d2"), lockDir, nil), func(o *Options) { o.LockTimeout = 50 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	uf, err := f1.Lock(ctx, "shared name")
	if err != nil {
		t.Fatalf("file mode waited for a keychain lock: %v", err)
	}
	defer uf()
	if u, err := f2.Lock(ctx, "shared name"); !errors.Is(err, ErrTimeout) {
		if u != nil {
			u()
		}
		t.Errorf("two file-mode stores got one lock: %v", err)
	}
}

// The encrypted-file reader accepts only the key-derivation parameters the
// writer uses (r=8, p=1, logN=15, or the test cost): a corrupt or crafted
// header cannot make a Load derive a key at a cost it names (N=2^20, r=16
// is 2 GiB). Rejected headers derive nothing.
func TestEncryptedFileRejectsForeignKDFParams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testMode{"encrypted-file", ModeEncryptedFile, 0})
	if err := e.Save(ctx, "k", canaryEntry()); err != nil {
		t.Fatal(err)
	}
	sl := e.Store.(*store).b.(*files).seal
	if sl.logN != minLogN {
		t.Fatalf("test setup: logN %d", sl.logN)
	}
	p := filepath.Join(e.dir, itemID("k")+".twenc")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	off := len(encMagic)
	for _, kp := range [][3]byte{
		{minLogN + 1, 8, 1}, // cheap enough to derive in a test, but not a cost the writer uses
		{16, 8, 1},
		{20, 16, 4},
		{minLogN, 9, 1},
		{minLogN, 8, 2},
		{minLogN, 16, 1},
		{9, 8, 1},
		{0, 0, 0},
	} {
		bad := append([]byte(nil), raw...)
		copy(bad[off:], kp[:])
		// Only headers that are rejected before derivation are safe to
		// feed the old reader in this test: check the header first.
		if _, ok := sl.parseHeader(bad); ok {
			t.Errorf("header with logN=%d r=%d p=%d accepted", kp[0], kp[1], kp[2])
			continue
		}
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := e.Load(ctx, "k"); !errors.Is(err, ErrCorrupt) || got != nil {
			t.Errorf("logN=%d r=%d p=%d: Load = %v, %v; want ErrCorrupt", kp[0], kp[1], kp[2], got, err)
		}
	}
	sl.mu.Lock()
	for k := range sl.keys {
		if k.logN != minLogN || k.r != scryptR || k.p != scryptP {
			t.Errorf("a key was derived with logN=%d r=%d p=%d", k.logN, k.r, k.p)
		}
	}
	sl.mu.Unlock()
	// The production cost is accepted too (files written by a store opened
	// without the test seam).
	good := append([]byte(nil), raw...)
	good[off] = defaultKDFLogN
	if _, ok := sl.parseHeader(good); !ok {
		t.Error("header with the default cost rejected")
	}
}
