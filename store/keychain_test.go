package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestSizesRoundTrip: entries from 100 bytes to
// 200 KB, including 10 KB and 64 KB, round-trip byte for byte through
// keychain mode on fakes that enforce Windows' 2560-byte blob limit and
// macOS's 4096-byte security -i line, and through every other mode.
func TestSizesRoundTrip(t *testing.T) {
	t.Parallel()
	sizes := []int{100, 2 << 10, 2900, 3 << 10, 4 << 10, 10 << 10, 20 << 10, 64 << 10, 200 << 10}
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			ctx := context.Background()
			for _, n := range sizes {
				want := sizedEntry(n)
				name := fmt.Sprint("size-", n)
				if err := e.Save(ctx, name, want); err != nil {
					t.Fatalf("%d: Save: %v", n, err)
				}
				got, err := e.reopen(t).Load(ctx, name)
				if err != nil {
					t.Fatalf("%d: Load: %v", n, err)
				}
				if a, b := mustEncode(t, name, got), mustEncode(t, name, want); string(a) != string(b) {
					t.Fatalf("%d: stored %d bytes, loaded %d bytes, not identical", n, len(b), len(a))
				}
			}
			if e.fake != nil {
				for k, v := range e.fake.Items() {
					if len(v) > 2300 {
						t.Errorf("item %q holds %d bytes", k, len(v))
					}
				}
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			err := e.Save(context.Background(), "big", sizedEntry(MaxEntrySize+1000))
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Save = %v, want ErrTooLarge", err)
			}
			if e.fake != nil && e.fake.Counts().Set != 0 {
				t.Fatalf("%d Set calls for a refused entry", e.fake.Counts().Set)
			}
		})
	}
}

// TestCrashInjection: the process
// "crashes" at every write step of a Save or Delete (the write either lands
// or not); a restarted process then reads the complete old entry or the
// complete new one, never a mix, and its next Save leaves no orphan.
func TestCrashInjection(t *testing.T) {
	t.Parallel()
	// Chunked sizes: 5 KB (4 chunks), 12 KB (8 chunks); 64 KB round trips
	// are in TestSizesRoundTrip.
	small, big10, big64, big10b := sizedEntry(500), sizedEntry(5<<10), sizedEntry(12<<10), sizedEntry(5<<10)
	scenarios := []struct {
		name     string
		old, new *Entry // old nil: nothing stored yet; new nil: Delete
	}{
		{"none to small", nil, small},
		{"none to 5K", nil, big10},
		{"small to 5K", small, big10},
		{"5K to small", big10, small},
		{"5K to 12K", big10, big64},
		{"12K to 5K", big64, big10},
		{"5K to 5K", big10, big10b},
		{"delete small", small, nil},
		{"delete 12K", big64, nil},
	}
	const name = "crash"
	for _, sc := range scenarios {
		for _, lands := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lands=%v", sc.name, lands), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				base := newEnv(t, keychainMode(fakekeychain.Windows))
				if sc.old != nil {
					if err := base.Save(ctx, name, sc.old); err != nil {
						t.Fatal(err)
					}
				}
				// open returns a store over a copy of the base keychain.
				open := func() (Store, *fakekeychain.Fake) {
					f := base.fake.Clone()
					return base.reopen(t, func(o *Options) { o.Backend = f }), f
				}
				op := func(s Store) error {
					if sc.new == nil {
						return s.Delete(ctx, name)
					}
					return s.Save(ctx, name, sc.new)
				}
				// Count the writes of an undisturbed run.
				s, f := open()
				if err := op(s); err != nil {
					t.Fatal(err)
				}
				writes := f.Counts().Set + f.Counts().Delete
				if writes == 0 {
					t.Fatal("no writes")
				}
				for n := 1; n <= writes; n++ {
					s, f := open()
					f.CrashAfter(n, lands)
					op(s)
					if !f.Crashed() {
						t.Fatalf("step %d: no crash", n)
					}
					f.Recover()
					s = base.reopen(t, func(o *Options) { o.Backend = f }) // restarted process
					got, err := s.Load(ctx, name)
					switch {
					case err == nil && sc.old != nil && sameEntry(t, got, sc.old):
					case err == nil && sc.new != nil && sameEntry(t, got, sc.new):
					case errors.Is(err, ErrNotFound) && (sc.old == nil || sc.new == nil):
					default:
						t.Fatalf("crash at write %d/%d: Load = (%v, %v): neither the old nor the new entry", n, writes, got != nil, err)
					}
					// The next Save (or Delete) of the restarted process
					// succeeds and sweeps every leftover.
					final := sizedEntry(3 << 10)
					if err := s.Save(ctx, name, final); err != nil {
						t.Fatalf("crash at write %d: recovery Save: %v", n, err)
					}
					if got, err := s.Load(ctx, name); err != nil || !sameEntry(t, got, final) {
						t.Fatalf("crash at write %d: after recovery Load = %v", n, err)
					}
					keychainState(t, f, name)
					if err := s.Delete(ctx, name); err != nil {
						t.Fatal(err)
					}
					if users := f.Users(defaultService); len(users) != 0 {
						t.Fatalf("crash at write %d: items left after Delete: %q", n, users)
					}
				}
			})
		}
	}
}

// TestCrashTwice crashes two Saves in a row at every pair of steps.
func TestCrashTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const name = "twice"
	a, b, c := sizedEntry(6<<10), sizedEntry(9<<10), sizedEntry(5<<10)
	for n1 := 1; n1 <= 9; n1++ {
		for n2 := 1; n2 <= 11; n2++ {
			e := newEnv(t, keychainMode(fakekeychain.Generic))
			if err := e.Save(ctx, name, a); err != nil {
				t.Fatal(err)
			}
			e.fake.CrashAfter(n1, n1%2 == 0)
			e.reopen(t).Save(ctx, name, b)
			e.fake.Recover()
			e.fake.CrashAfter(n2, n2%2 == 1)
			e.reopen(t).Save(ctx, name, c)
			e.fake.Recover()
			s := e.reopen(t)
			got, err := s.Load(ctx, name)
			if err != nil || !(sameEntry(t, got, a) || sameEntry(t, got, b) || sameEntry(t, got, c)) {
				t.Fatalf("crashes at %d, %d: Load = %v", n1, n2, err)
			}
			// The next write sweeps what both crashes left. (An unchanged
			// Save writes nothing, so it would not sweep.)
			if err := s.Save(ctx, name, sizedEntry(7<<10)); err != nil {
				t.Fatal(err)
			}
			keychainState(t, e.fake, name)
		}
	}
}

// TestUnchangedNotRewritten: saving an unchanged entry writes
// nothing; each refresh of a non-rotating IdP (new access token, same
// refresh token) costs one item write for a small entry.
func TestUnchangedNotRewritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, size := range []int{500, 10 << 10} {
		e := newEnv(t, keychainMode(fakekeychain.SecretService))
		ent := sizedEntry(size)
		if err := e.Save(ctx, "k", ent); err != nil {
			t.Fatal(err)
		}
		first := e.fake.Counts()
		for range 10 {
			if err := e.Save(ctx, "k", ent.clone()); err != nil {
				t.Fatal(err)
			}
		}
		if c := e.fake.Counts(); c.Set != first.Set || c.Delete != first.Delete {
			t.Fatalf("size %d: 10 unchanged saves wrote: %+v -> %+v", size, first, c)
		}
	}
	e := newEnv(t, keychainMode(fakekeychain.SecretService))
	ent := canaryEntry()
	for i := range 10 {
		ent.AccessToken = fmt.Sprint("access-token-", i)
		if err := e.Save(ctx, "k", ent); err != nil {
			t.Fatal(err)
		}
	}
	if c := e.fake.Counts(); c.Set != 10 {
		t.Fatalf("10 refreshes made %d Set calls, want 10", c.Set)
	}
}

// TestMacOSBoundaryVerify: the security -i line of a write is swept
// across 4090..4100 bytes. At exactly 4096 go-keyring returns nil for a
// write that did not happen; only the read-back catches it (ErrWriteVerify),
// and the previous value stays.
func TestMacOSBoundaryVerify(t *testing.T) {
	t.Parallel()
	for want := 4090; want <= 4100; want++ {
		for _, existing := range []bool{false, true} {
			f := fakekeychain.NewMacOS()
			k := &keychain{be: f, service: "svc", g: newGuard(), chunkSize: defaultChunkSize, inlineMax: defaultInlineMax, log: discard()}
			user, value := macLine(t, "svc", want)
			if existing {
				f.Set("svc", user, "previous")
			}
			err := k.setVerified(context.Background(), user, value)
			got, _ := f.Get("svc", user)
			switch {
			case want <= 4095:
				if err != nil || got != value {
					t.Errorf("%d: setVerified = %v", want, err)
				}
			case want == 4096:
				if !errors.Is(err, ErrWriteVerify) {
					t.Errorf("%d: setVerified = %v, want ErrWriteVerify", want, err)
				}
				if existing && got != "previous" {
					t.Errorf("%d: previous value lost", want)
				}
			default:
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("%d: setVerified = %v, want ErrTooLarge", want, err)
				}
			}
		}
	}
}

func macLine(t *testing.T, service string, n int) (user, value string) {
	t.Helper()
	for vl := 2700; vl < 3200; vl += 3 {
		v := strings.Repeat("v", vl)
		if l := len(fakekeychain.MacOSCommand(service, "u", v)); l <= n && n-l < 4 {
			return strings.Repeat("u", 1+n-l), v
		}
	}
	t.Fatalf("no line of %d bytes", n)
	return "", ""
}

// TestMacOSBoundaryThroughStore: with the inline limit raised so that a
// manifest's security -i line is exactly 4096 bytes, Save reports
// ErrWriteVerify instead of success and the old entry is still loaded.
// With the default sizes no item comes near the boundary (TestSizesRoundTrip).
func TestMacOSBoundaryThroughStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const name = "boundary"
	id := itemID(name)
	// A line's length modulo 4 is fixed by the names (base64 grows in steps
	// of 4), so the service name's length is varied too.
	var hit *Entry
	var service string
	for sl := 9; sl < 13 && hit == nil; sl++ {
		svc := strings.Repeat("s", sl)
		for l := 1900; l < 2300 && hit == nil; l++ {
			e := &Entry{AccessToken: strings.Repeat("a", l)}
			data := mustEncode(t, name, e)
			sum := sha256.Sum256(data)
			m := manifest{V: manifestVersion, Gen: 2, Len: len(data), SHA256: hex.EncodeToString(sum[:]), Data: base64.StdEncoding.EncodeToString(data)}
			raw, _ := json.Marshal(&m)
			if len(fakekeychain.MacOSCommand(svc, id, string(raw))) == fakekeychain.MacOSMaxLine {
				hit, service = e, svc
			}
		}
	}
	if hit == nil {
		t.Fatal("found no entry whose manifest line is 4096 bytes")
	}
	e := newEnv(t, keychainMode(fakekeychain.MacOS), func(o *Options) { o.inlineMax = 4000; o.Service = service })
	old := &Entry{AccessToken: "old"}
	if err := e.Save(ctx, name, old); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(ctx, name, hit); !errors.Is(err, ErrWriteVerify) {
		t.Fatalf("Save at the boundary = %v, want ErrWriteVerify", err)
	}
	got, err := e.Load(ctx, name)
	if err != nil || got.AccessToken != "old" {
		t.Fatalf("Load after the dropped write = %v, %v; want the old entry", got, err)
	}
}

// TestNamesRoundTrip: names with
// \ ' " : space newline é ../ round-trip on every mode and never alias one
// another; invalid names are rejected, never renamed.
func TestNamesRoundTrip(t *testing.T) {
	t.Parallel()
	names := []string{`\`, `a\b`, "ab", `'`, `"`, ":", "a:b", "a", "b:c", "a:b:c", " ", "a b", "\n", "a\nb", "é", "e\u0301",
		"../", "../../x", "..", ".", "/", "x/../../y", "tw1-aaaa", "C:\\Windows", "%2e%2e", "\x00", "\t",
		Key{Issuer: "https://as.example.com", ClientID: "c", Scopes: []string{"a"}}.String()}
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			ctx := context.Background()
			for i, n := range names {
				if err := e.Save(ctx, n, &Entry{AccessToken: fmt.Sprint("token-", i), Subject: n}); err != nil {
					t.Fatalf("Save(%q): %v", n, err)
				}
			}
			s := e.reopen(t)
			for i, n := range names {
				got, err := s.Load(ctx, n)
				if err != nil || got.AccessToken != fmt.Sprint("token-", i) || got.Subject != n {
					t.Fatalf("Load(%q) = %+v, %v", n, got, err)
				}
			}
			for _, bad := range []string{"", "\xff\xfe", strings.Repeat("n", maxNameLen+1)} {
				if err := s.Save(ctx, bad, &Entry{}); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Save(%q) = %v, want ErrInvalidKey", bad, err)
				}
				if _, err := s.Load(ctx, bad); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Load(%q) = %v, want ErrInvalidKey", bad, err)
				}
			}
			if e.fake != nil {
				for _, u := range e.fake.Users(defaultService) {
					if !strings.HasPrefix(u, "tw1-") || strings.ContainsAny(u, `\'": `+"\n") {
						t.Errorf("backend user %q is not an encoded id", u)
					}
				}
				if argv := e.fake.Argv(); len(argv) > 0 {
					for _, a := range argv {
						for _, n := range names[:len(names)-1] { // the last is a Key name, not secret-looking
							if len(n) > 2 && strings.Contains(strings.Join(a, " "), n) {
								t.Errorf("raw name %q in argv %q", n, a)
							}
						}
					}
				}
			}
			if m.mode == ModeEncryptedFile || m.mode == ModePlaintextFile {
				root := strings.TrimSuffix(e.dir, "data")
				for _, p := range treeFiles(t, root) {
					if p == "data" || p == "locks" || strings.HasPrefix(p, "locks/tw1-") {
						continue
					}
					if !strings.HasPrefix(p, "data/tw1-") || strings.Count(p, "/") != 1 {
						t.Errorf("unexpected file %q", p)
					}
				}
			}
			for _, n := range names {
				if err := s.Delete(ctx, n); err != nil {
					t.Fatalf("Delete(%q): %v", n, err)
				}
				if _, err := s.Load(ctx, n); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Load(%q) after Delete = %v", n, err)
				}
			}
			if err := s.Delete(ctx, "never stored"); err != nil {
				t.Fatalf("Delete of an absent entry = %v", err)
			}
		})
	}
}

// TestLockedNeverDowngrades: a locked keychain fails with ErrLocked
// and nothing is written anywhere else.
func TestLockedNeverDowngrades(t *testing.T) {
	t.Parallel()
	want := map[fakekeychain.Model]error{
		fakekeychain.Windows: ErrUnavailable, fakekeychain.MacOS: ErrLocked,
		fakekeychain.SecretService: ErrLocked, fakekeychain.Generic: ErrLocked,
	}
	for _, m := range keychainModels {
		e := newEnv(t, keychainMode(m))
		e.fake.SetLocked(true)
		ctx := context.Background()
		if err := e.Save(ctx, "k", canaryEntry()); !errors.Is(err, want[m]) {
			t.Errorf("%v: Save = %v, want %v", m, err, want[m])
		}
		if _, err := e.Load(ctx, "k"); !errors.Is(err, want[m]) {
			t.Errorf("%v: Load = %v, want %v", m, err, want[m])
		}
		if st := e.Status(); st.Mode != ModeKeychain {
			t.Errorf("%v: mode changed to %s", m, st.Mode)
		}
		if files := append(treeFiles(t, e.dir), treeFiles(t, e.lockDir)...); len(files) != 0 {
			t.Errorf("%v: files written: %q", m, files)
		}
		if c := e.fake.Counts(); c.Set != 0 {
			t.Errorf("%v: %d Set calls", m, c.Set)
		}
	}
}
