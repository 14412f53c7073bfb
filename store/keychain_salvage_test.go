package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestSalvageGens: the generations an unreadable manifest may own are
// read from its text as far as it goes (JSON or not, capped in number),
// each with its successor, and generations 1 to 4 are always probed.
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
