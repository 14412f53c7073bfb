package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
)

// The TestKeychain* tests run against the real OS keychain (newEnv with
// osKeychain, each store under a service name of its own). They run only
// under .ci/keychain-suite.sh (TOKENWARD_KEYCHAIN_SUITE=1), which starts
// gnome-keyring, unlocked, in a private D-Bus session with throwaway
// keyrings; anywhere else they skip, so they never touch a developer's
// keychain.
func keychainSuite(t *testing.T) {
	t.Helper()
	if os.Getenv("TOKENWARD_KEYCHAIN_SUITE") != "1" {
		t.Skip("real-keychain test: run `make keychain` (.ci/keychain-suite.sh sets TOKENWARD_KEYCHAIN_SUITE=1 and starts gnome-keyring in a private D-Bus session)")
	}
}

// TestKeychainAvailable: the probe accepts the suite's running, unlocked
// gnome-keyring. It runs with a generous deadline: its one-second one is
// TestProbeHungBus's subject, and on a loaded machine it would make this
// test fail for a reason that is not the keychain's.
func TestKeychainAvailable(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	if err := available(context.Background(), backstop); err != nil {
		t.Fatalf("Available = %v", err)
	}
	s := newEnv(t, osKeychain(nil)).Store
	st := s.Status()
	if st.Mode != ModeKeychain || !strings.Contains(st.Backend, "Secret Service") || !st.Encrypted {
		t.Fatalf("Status = %+v", st)
	}
	t.Logf("status: %s", st)

	// Every store on the OS keychain shares the process's one guard, so a
	// hung keychain leaves one goroutine behind per process, not per store.
	s2 := newEnv(t, osKeychain(nil)).Store
	for i, st := range []Store{s, s2} {
		if g := st.(*store).b.(*keychain).g; g != osGuard {
			t.Fatalf("store %d has its own guard, want the process's osGuard", i)
		}
	}
}

// TestKeychainRoundTrip: 64 KB and 10 KB entries round-trip
// byte for byte through gnome-keyring; Delete leaves no item behind.
func TestKeychainRoundTrip(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, osKeychain(nil))
	s, service := e.Store, e.service
	for _, n := range []int{300, 10 << 10, 64 << 10} {
		name := fmt.Sprint("size-", n)
		want := sizedEntry(n)
		if err := s.Save(ctx, name, want); err != nil {
			t.Fatalf("%d: Save: %v", n, err)
		}
		got, err := e.reopen(t).Load(ctx, name) // another process
		if err != nil {
			t.Fatalf("%d: Load: %v", n, err)
		}
		if !sameEntry(t, got, want) {
			t.Fatalf("%d: not identical", n)
		}
		// Every item is where the layout says, and Delete removes them all.
		raw, err := osKeyring{}.Get(service, itemID(name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseManifest(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		users := []string{itemID(name)}
		for i := range m.N {
			users = append(users, chunkUser(itemID(name), m.Gen, i))
		}
		for _, u := range users {
			if _, err := (osKeyring{}).Get(service, u); !errors.Is(classify(err), ErrNotFound) {
				t.Fatalf("%d: item %s after Delete: %v", n, u, err)
			}
		}
		if _, err := s.Load(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%d: Load after Delete = %v", n, err)
		}
	}
}

// TestKeychainNames: names with quotes, separators, newlines and "../"
// round-trip on gnome-keyring.
func TestKeychainNames(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	s := newEnv(t, osKeychain(nil)).Store
	names := []string{`\`, `'`, `"`, ":", " ", "\n", "é", "../", "../../x", "a:b", "a", "b:c"}
	for i, n := range names {
		if err := s.Save(ctx, n, &Entry{AccessToken: fmt.Sprint("t", i), Subject: n}); err != nil {
			t.Fatalf("Save(%q): %v", n, err)
		}
	}
	for i, n := range names {
		got, err := s.Load(ctx, n)
		if err != nil || got.AccessToken != fmt.Sprint("t", i) || got.Subject != n {
			t.Fatalf("Load(%q) = %+v, %v", n, got, err)
		}
	}
	for _, n := range names {
		if err := s.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

// countingBackend counts writes to a Backend and can crash after the Nth.
type countingBackend struct {
	Backend
	mu      sync.Mutex
	sets    int
	writes  int
	crashAt int
	lands   bool
	crashed bool
}

var errTestCrash = errors.New("test: process crashed (injected)")

func (c *countingBackend) write(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errTestCrash
	}
	c.writes++
	if c.crashAt > 0 && c.writes == c.crashAt {
		c.crashed = true
		if c.lands {
			f()
		}
		return errTestCrash
	}
	return f()
}

func (c *countingBackend) Set(service, user, secret string) error {
	c.mu.Lock()
	c.sets++
	c.mu.Unlock()
	return c.write(func() error { return c.Backend.Set(service, user, secret) })
}

func (c *countingBackend) Delete(service, user string) error {
	return c.write(func() error { return c.Backend.Delete(service, user) })
}

func (c *countingBackend) Get(service, user string) (string, error) {
	c.mu.Lock()
	crashed := c.crashed
	c.mu.Unlock()
	if crashed {
		return "", errTestCrash
	}
	return c.Backend.Get(service, user)
}

// TestKeychainUnchanged on gnome-keyring: an unchanged Save makes no Set
// call.
func TestKeychainUnchanged(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	cb := &countingBackend{Backend: osKeyring{}}
	s := newEnv(t, osKeychain(cb)).Store
	ent := sizedEntry(5 << 10)
	if err := s.Save(ctx, "k", ent); err != nil {
		t.Fatal(err)
	}
	before := cb.sets
	for range 5 {
		if err := s.Save(ctx, "k", ent); err != nil {
			t.Fatal(err)
		}
	}
	if cb.sets != before {
		t.Fatalf("unchanged saves made %d Set calls", cb.sets-before)
	}
	s.Delete(ctx, "k")
}

// TestKeychainCrash on gnome-keyring: a crash at every write
// of replacing a 2 KB entry (2 chunks) by a 5 KB one (4 chunks) leaves the
// old or the new one, and the next Save sweeps the leftovers. (Every size
// combination is covered on the fakes by TestCrashInjection.)
func TestKeychainCrash(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	old, nw := sizedEntry(2<<10), sizedEntry(5<<10)
	probe := &countingBackend{Backend: osKeyring{}}
	s := newEnv(t, osKeychain(probe)).Store
	s.Save(ctx, "k", old)
	probe.writes = 0
	if err := s.Save(ctx, "k", nw); err != nil {
		t.Fatal(err)
	}
	steps := probe.writes
	s.Delete(ctx, "k")
	for _, lands := range []bool{false, true} {
		for n := 1; n <= steps; n++ {
			cb := &countingBackend{Backend: osKeyring{}}
			e := newEnv(t, osKeychain(cb))
			s, service := e.Store, e.service
			if err := s.Save(ctx, "k", old); err != nil {
				t.Fatal(err)
			}
			cb.mu.Lock()
			cb.writes, cb.crashAt, cb.lands = 0, n, lands
			cb.mu.Unlock()
			s.Save(ctx, "k", nw)
			// A restarted process, straight on the OS keychain.
			s2 := e.reopen(t, func(o *Options) { o.Backend = nil })
			got, err := s2.Load(ctx, "k")
			if err != nil || !(sameEntry(t, got, old) || sameEntry(t, got, nw)) {
				t.Fatalf("crash at write %d/%d (lands=%v): Load = %v", n, steps, lands, err)
			}
			if err := s2.Save(ctx, "k", sizedEntry(3<<10)); err != nil {
				t.Fatal(err)
			}
			if err := s2.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			// Nothing of any generation is left.
			for gen := uint64(1); gen <= 3; gen++ {
				for i := range 5 {
					if _, err := (osKeyring{}).Get(service, chunkUser(itemID("k"), gen, i)); !errors.Is(classify(err), ErrNotFound) {
						t.Fatalf("crash at write %d: chunk g%d.c%d left: %v", n, gen, i, err)
					}
				}
			}
		}
	}
}

// TestKeychainCanary on gnome-keyring: no canary secret in errors, logs or
// Status.
func TestKeychainCanary(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	log, logs := newLogger()
	s := newEnv(t, osKeychain(nil), func(o *Options) { o.Logger = log }).Store
	e := canaryEntry()
	if err := s.Save(ctx, "k", e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	mustEqualEntry(t, got, e)
	_, err = s.Load(ctx, "absent")
	out := fmt.Sprintf("%+v\n%s\n%s", err, logs.String(), s.Status())
	if found := canary.Find(out, secretsOf(e)...); len(found) > 0 {
		t.Fatalf("secrets leaked:\n%s", out)
	}
	s.Delete(ctx, "k")
}
