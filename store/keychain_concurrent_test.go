package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gofrs/flock"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestLoadRacingWriterVanishedItem: go-keyring reads a Secret Service item
// in two steps, a search and a read of the object the search found. Here
// another process (a second store over the same fake Secret Service)
// rotates, deletes or re-creates the entry in the gap between the two
// steps of one of the reader's item reads: its manifest's, or one of its
// chunks'. An item deleted in that gap fails the read the way gnome-keyring
// fails it (org.freedesktop.DBus.Error.UnknownMethod for the vanished
// object path). No Load may fail because of that: each returns the entry
// as it was before the writer's step or after it, or ErrNotFound when the
// entry did not exist before or after; never ErrUnavailable, never
// ErrCorrupt.
func TestLoadRacingWriterVanishedItem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const name = "rotating"
	f := fakekeychain.NewSecretService()
	e := newEnv(t, onBackend(f))
	writer, reader := e.Store, e.reopen(t)
	// Two chunked entries of different sizes, then a delete, then an
	// inline one: every kind of step a writer takes.
	a, b, small := sizedEntry(5<<10), sizedEntry(9<<10), sizedEntry(600)
	var current *Entry // what the writer's last step left; nil: no entry
	step := func(i int) {
		current = []*Entry{a, b, nil, small}[i%4]
		var err error
		if current == nil {
			err = writer.Delete(ctx, name)
		} else {
			err = writer.Save(ctx, name, current)
		}
		if err != nil {
			t.Errorf("writer step %d: %v", i, err)
		}
	}

	var (
		searchesLeft atomic.Int32 // the reader's searches until the writer steps in; <= 0: not in this Load
		writing      atomic.Bool  // the writer's own calls run the hook too
		vanished     atomic.Int32 // reads whose item the writer deleted in the gap
		i            int
	)
	f.SetAfterSearch(func(c fakekeychain.Call) {
		if writing.Load() || searchesLeft.Add(-1) != 0 {
			return
		}
		writing.Store(true)
		defer writing.Store(false)
		step(i)
		if !slices.Contains(f.Users(c.Service), c.User) {
			vanished.Add(1)
		}
	})
	const loads = 240
	failed := 0
	for i = range loads {
		before := current
		// Step in during the manifest's read or one of the first chunks'.
		searchesLeft.Store(int32(1 + i%5))
		got, err := reader.Load(ctx, name)
		stepped := searchesLeft.Swap(0) <= 0
		after := current
		switch {
		case err == nil && ((before != nil && sameEntry(t, got, before)) || (after != nil && sameEntry(t, got, after))):
		case errors.Is(err, ErrNotFound) && (before == nil || after == nil):
		default:
			failed++
			t.Errorf("Load %d (writer step %d in between: %v) = %v; want the entry before or after the step", i, i%4, stepped, err)
		}
		if !stepped {
			step(i) // the Load made fewer reads than planned; keep the sequence going
		}
	}
	if failed != 0 {
		t.Fatalf("%d of %d Loads failed while another process wrote the entry", failed, loads)
	}
	if n := vanished.Load(); n < loads/10 {
		t.Fatalf("only %d reads found their item deleted between search and read: the test did not exercise the race", n)
	}
	t.Logf("%d of %d Loads had an item vanish between its search and its read; none failed", vanished.Load(), loads)
	f.SetAfterSearch(nil)
	keychainState(t, f, name)
}

// TestLoadRacingWriterEveryAttempt: another process rewrites the entry
// during every one of the reader's lock-free attempts, so none of them
// sees a whole entry. Load then reads under the entry's write lock, which
// writers take too, and returns the entry the last writer left: not
// ErrCorrupt, not ErrUnavailable. The writer steps in only while the lock
// is free, as a writer of another process would have to.
func TestLoadRacingWriterEveryAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const name = "rotating"
	f := fakekeychain.NewSecretService()
	e := newEnv(t, onBackend(f))
	writer, reader := e.Store, e.reopen(t)
	entries := []*Entry{sizedEntry(5 << 10), sizedEntry(8 << 10)}
	if err := writer.Save(ctx, name, entries[0]); err != nil {
		t.Fatal(err)
	}
	current := entries[0]
	lockPath := filepath.Join(e.lockDir, reader.(*store).lockFile(itemID(name), ".write.lock"))
	var writing bool // the hook runs on the reader's goroutine only, one call at a time
	steps, underLock := 0, 0
	f.SetAfterSearch(func(c fakekeychain.Call) {
		if writing {
			return
		}
		fl := flock.New(lockPath)
		if ok, err := fl.TryLock(); err != nil || !ok {
			underLock++ // the reader holds the write lock: no writer can step in
			return
		}
		fl.Unlock()
		writing = true
		defer func() { writing = false }()
		steps++
		current = entries[steps%2]
		if err := writer.Save(ctx, name, current); err != nil {
			t.Errorf("writer step %d: %v", steps, err)
		}
	})
	got, err := reader.Load(ctx, name)
	f.SetAfterSearch(nil)
	if err != nil || !sameEntry(t, got, current) {
		t.Fatalf("Load = %v after %d writer steps; want the entry the last step left", err, steps)
	}
	if steps < maxGetRetries || underLock == 0 {
		t.Fatalf("%d writer steps, %d reads under the lock: the lock-free attempts were not all spoiled", steps, underLock)
	}
	t.Logf("%d writer steps spoiled the lock-free attempts; the read under the write lock made %d searches", steps, underLock)
}

// TestConcurrentWriters: two stores (two processes) save one name at once;
// the cross-process write lock keeps their chunk writes apart, so the
// survivor is whole and no chunk is orphaned. Readers meanwhile see one of
// the entries (or nothing yet), never a mix and never an error: not even
// on the Secret Service model, where an item can vanish between the search
// and the read of one Get.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, model := range []fakekeychain.Model{fakekeychain.Generic, fakekeychain.SecretService} {
		t.Run(model.String(), func(t *testing.T) {
			t.Parallel()
			testConcurrentWriters(t, model)
		})
	}
}

func testConcurrentWriters(t *testing.T, model fakekeychain.Model) {
	ctx := context.Background()
	e := newEnv(t, keychainMode(model))
	a, b := sizedEntry(8<<10), sizedEntry(12<<10)
	p1, p2, reader := e.reopen(t), e.reopen(t), e.reopen(t)
	var wg sync.WaitGroup
	for _, w := range []struct {
		s   Store
		ent *Entry
	}{{p1, a}, {p2, b}} {
		wg.Go(func() {
			for i := range 15 {
				ent := w.ent.clone()
				ent.Subject = fmt.Sprint(i)
				if err := w.s.Save(ctx, "shared", ent); err != nil {
					t.Errorf("Save: %v", err)
				}
			}
		})
	}
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := reader.Load(ctx, "shared")
			if err != nil {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("Load: %v", err)
				}
				continue
			}
			if got.AccessToken != a.AccessToken && got.AccessToken != b.AccessToken {
				t.Errorf("Load returned a mix")
			}
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()
	got, err := e.Load(ctx, "shared")
	if err != nil || (got.AccessToken != a.AccessToken && got.AccessToken != b.AccessToken) {
		t.Fatalf("final Load = %v", err)
	}
	keychainState(t, e.fake, "shared")
}

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
			reader := e.reopen(t, func(o *Options) { o.Backend = be })
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
