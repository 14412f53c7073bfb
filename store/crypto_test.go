package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
)

// Tests of the encrypted-file format: authenticated encryption, and the
// passphrase key, derived by Open once per salt and only at a cost the
// writer uses.

// TestEncryptedFile: the file holds no plaintext; a wrong passphrase, any
// altered byte, a truncation or a file moved to another name fail with
// ErrCorrupt and yield nothing.
func TestEncryptedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, encryptedFileMode)
	want := canaryEntry()
	if err := e.Save(ctx, "k", want); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, itemID("k")+".twenc")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if found := canary.Find(string(raw), secretsOf(want)...); len(found) > 0 || strings.Contains(string(raw), "Bearer") {
		t.Fatalf("plaintext in the encrypted file: %q", found)
	}
	got, err := e.reopen(t).Load(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	mustEqualEntry(t, got, want)

	wrong := e.reopen(t, func(o *Options) { o.Passphrase = "wrong" })
	if got, err := wrong.Load(ctx, "k"); !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("wrong passphrase: Load = %v, %v; want ErrCorrupt", got, err)
	}
	if err := wrong.Save(ctx, "other", want); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < len(raw); i += max(1, len(raw)/97) {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x01
		os.WriteFile(p, bad, 0o600)
		if got, err := e.Load(ctx, "k"); !errors.Is(err, ErrCorrupt) || got != nil {
			t.Fatalf("byte %d altered: Load = %v, %v; want ErrCorrupt", i, got, err)
		}
	}
	for _, n := range []int{0, 5, encHdrLen, len(raw) - 1} {
		os.WriteFile(p, raw[:n], 0o600)
		if got, err := e.Load(ctx, "k"); !errors.Is(err, ErrCorrupt) || got != nil {
			t.Fatalf("truncated to %d: Load = %v, %v; want ErrCorrupt", n, got, err)
		}
	}
	// Moved under another name: the id is authenticated.
	os.WriteFile(filepath.Join(e.dir, itemID("moved")+".twenc"), raw, 0o600)
	if _, err := e.Load(ctx, "moved"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("moved file: Load = %v, want ErrCorrupt", err)
	}
	// A corrupt file is replaced by the next Save.
	if err := e.Save(ctx, "k", want); err != nil {
		t.Fatalf("Save over a corrupt file: %v", err)
	}
	if _, err := e.Load(ctx, "k"); err != nil {
		t.Fatal(err)
	}
}

// TestKeyDerivedOnce: the scrypt key is derived once per salt and cached;
// rewriting a file keeps its salt.
func TestKeyDerivedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, encryptedFileMode)
	for i := range 5 {
		if err := e.Save(ctx, "k", &Entry{AccessToken: strings.Repeat("x", i+1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Load(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	f := e.Store.(*store).b.(*files)
	f.seal.mu.Lock()
	n := len(f.seal.keys)
	f.seal.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d keys derived for one file, want 1", n)
	}
}

// derivations returns how many passphrase keys s has derived.
func derivations(t *testing.T, s Store) int {
	t.Helper()
	seal := s.(*store).b.(*files).seal
	seal.mu.Lock()
	defer seal.mu.Unlock()
	return seal.derived
}

// TestEncryptedFileKeyDerivedAtOpen: the passphrase key (scrypt, slow on
// purpose, and seconds on a loaded machine or under the race detector) is
// derived by Open, once, and never inside a Load, Save or Delete, whose
// deadline it would eat into: new entries share the salt of the files
// already there, and a restarted process derives the one key at Open.
func TestEncryptedFileKeyDerivedAtOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, encryptedFileMode)
	if n := derivations(t, e.Store); n != 1 {
		t.Fatalf("Open of an empty directory derived %d keys, want 1", n)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := e.Save(ctx, name, canaryEntry()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Load(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := e.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if n := derivations(t, e.Store); n != 1 {
		t.Fatalf("after saving, loading and deleting: %d keys derived, want still 1", n)
	}
	again := e.reopen(t)
	if n := derivations(t, again); n != 1 {
		t.Fatalf("Open of a directory with two entries of one salt derived %d keys, want 1", n)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := again.Load(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := again.Save(ctx, "d", canaryEntry()); err != nil {
		t.Fatal(err)
	}
	if n := derivations(t, again); n != 1 {
		t.Fatalf("the restarted store derived %d keys for its loads and saves, want the 1 of Open", n)
	}
}

// The encrypted-file reader accepts only the key-derivation parameters the
// writer uses (r=8, p=1, logN=15, or the test cost): a corrupt or crafted
// header cannot make a Load derive a key at a cost it names (N=2^20, r=16
// is 2 GiB). Rejected headers derive nothing.
func TestEncryptedFileRejectsForeignKDFParams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, encryptedFileMode)
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

// fileSalt returns the salt in the header of the encrypted file of name.
func fileSalt(t *testing.T, dir, name string) [saltLen]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var salt [saltLen]byte
	if len(raw) < encHdrLen {
		t.Fatalf("%s: %d bytes, shorter than a header", name, len(raw))
	}
	copy(salt[:], raw[len(encMagic)+3:])
	return salt
}

// TestPlantedFileDoesNotChooseSalt: a file in the store directory that does
// not open with this store's passphrase (someone else's, or planted) never
// chooses the salt of the files this store writes: not of new files, and
// not of the file it replaces under the same name. New files take the salt
// of a file that opens (decrypts and authenticates), else a new random one.
func TestPlantedFileDoesNotChooseSalt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plant := func(t *testing.T, dir, id string) [saltLen]byte {
		t.Helper()
		other := newSealer("another passphrase", minLogN)
		raw, err := other.seal(id, []byte(`{"v":1}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".twenc"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return fileSalt(t, dir, id+".twenc")
	}

	t.Run("only a planted file", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, encryptedFileMode)
		planted := plant(t, e.dir, "0") // sorts before every item id
		s := e.reopen(t)
		if err := s.Save(ctx, "k", canaryEntry()); err != nil {
			t.Fatal(err)
		}
		if fileSalt(t, e.dir, itemID("k")+".twenc") == planted {
			t.Fatal("a new file took the salt of a file that does not open with this passphrase")
		}
	})

	t.Run("a planted file beside ours", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, encryptedFileMode)
		if err := e.Save(ctx, "ours", canaryEntry()); err != nil {
			t.Fatal(err)
		}
		ours := fileSalt(t, e.dir, itemID("ours")+".twenc")
		planted := plant(t, e.dir, "0")
		// And one under the name this store will save next.
		plantedThere := plant(t, e.dir, itemID("there"))
		s := e.reopen(t)
		for _, name := range []string{"new", "there"} {
			if err := s.Save(ctx, name, canaryEntry()); err != nil {
				t.Fatal(err)
			}
			got := fileSalt(t, e.dir, itemID(name)+".twenc")
			if got == planted || got == plantedThere || got != ours {
				t.Errorf("%s: written with salt %x, want this store's %x (planted: %x, %x)", name, got, ours, planted, plantedThere)
			}
			if _, err := s.Load(ctx, name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		// The planted file is left for the operation that meets it.
		if _, err := os.Stat(filepath.Join(e.dir, "0.twenc")); err != nil {
			t.Fatalf("the planted file was touched: %v", err)
		}
	})
}
