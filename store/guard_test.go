package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestHungBackend in a synctest bubble: a Secret Service whose unlock
// prompt never completes makes Save return
// ErrTimeout exactly at the default deadline; while the call is still hung,
// later calls fail at once without starting another backend call (one
// leaked goroutine at most); nothing is written anywhere else; once the
// prompt completes the store works again.
func TestHungBackend(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := fakekeychain.NewSecretService()
		e := newEnv(t, onBackend(f))
		s := e.Store
		release := f.Block()
		defer release()
		ctx := context.Background()

		start := time.Now()
		err := s.Save(ctx, "k", canaryEntry())
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Save = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d < defaultTimeout || d > defaultTimeout+100*time.Millisecond {
			t.Fatalf("Save returned after %v, want the %v deadline (+100ms)", d, defaultTimeout)
		}
		synctest.Wait()
		if n := f.Blocked(); n != 1 {
			t.Fatalf("%d backend calls blocked, want 1", n)
		}

		// Fail fast while hung, with or without a context deadline.
		start = time.Now()
		for range 5 {
			if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Load while hung = %v, want ErrTimeout", err)
			}
			if err := s.Delete(ctx, "k"); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Delete while hung = %v, want ErrTimeout", err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("calls while hung took %v, want no wait", d)
		}
		synctest.Wait()
		if n, c := f.Blocked(), f.Counts(); n != 1 || c.Get != 1 {
			t.Fatalf("blocked %d, counts %+v: a hung guard started another backend call", n, c)
		}
		if c := f.Counts(); c.Set != 0 {
			t.Fatalf("%d Set calls", c.Set)
		}
		if files := append(treeFiles(t, e.dir), treeFiles(t, e.lockDir)...); len(files) != 0 {
			t.Fatalf("files written while hung: %q", files)
		}

		// A caller's shorter deadline wins.
		release()
		synctest.Wait()
		release2 := f.Block()
		defer release2()
		cctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		start = time.Now()
		_, err = s.Load(cctx, "k")
		cancel()
		if !errors.Is(err, ErrTimeout) || time.Since(start) != 250*time.Millisecond {
			t.Fatalf("Load = %v after %v, want ErrTimeout after 250ms", err, time.Since(start))
		}
		release2()
		synctest.Wait()

		// Recovered.
		if err := s.Save(ctx, "k", &Entry{AccessToken: "x"}); err != nil {
			t.Fatalf("Save after the prompt completed: %v", err)
		}
		if got, err := s.Load(ctx, "k"); err != nil || got.AccessToken != "x" {
			t.Fatalf("Load after recovery = %v, %v", got, err)
		}
	})
}

// TestHungBackendRealClock checks the same with the real clock: a hung
// backend makes Load return ErrTimeout once its deadline has passed (never
// before), and while the call stays hung a second Load fails fast: it
// starts no backend call and reports the blocked call instead of waiting
// for a deadline of its own. What is asserted is outcomes and call counts;
// the only clock bound is a generous backstop against a hang.
func TestHungBackendRealClock(t *testing.T) {
	t.Parallel()
	f := fakekeychain.NewSecretService()
	const timeout = 150 * time.Millisecond
	s := newEnv(t, onBackend(f), func(o *Options) { o.Timeout = timeout }).Store
	release := f.Block()
	defer release()
	start := time.Now()
	_, err := s.Load(context.Background(), "k")
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || strings.Contains(err.Error(), errHung) {
		t.Fatalf("Load = %v, want ErrTimeout at its own deadline", err)
	}
	if d < timeout || d > timeout+backstop {
		t.Fatalf("Load returned after %v, want its %v deadline (backstop %v)", d, timeout, backstop)
	}
	// The second Load is refused because the first call is still blocked:
	// its error says so, and the backend saw no second call. Had it waited
	// for a deadline of its own, it would have started a call first.
	if _, err := s.Load(context.Background(), "k"); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), errHung) {
		t.Fatalf("second Load = %v, want the fail-fast ErrTimeout", err)
	}
	if c, n := f.Counts(), f.Blocked(); c.Get != 1 || n != 1 {
		t.Fatalf("counts %+v, %d blocked: the second Load started a backend call", c, n)
	}
}

// TestHungProbe (synctest, so its clock is exact): an availability probe
// that hangs makes Open fail with ErrTimeout within a second; it is never a
// reason to use another mode.
func TestHungProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := fakekeychain.NewSecretService()
		release := f.Block()
		defer release()
		b := &probingBackend{Fake: f}
		root := t.TempDir()
		start := time.Now()
		s, err := Open(context.Background(), testOptions(ModeKeychain, root+"/data", root+"/locks", b),
			func(o *Options) { o.probeTimeout = probeTimeout }) // the deadline under test
		if !errors.Is(err, ErrTimeout) || s != nil {
			t.Fatalf("Open = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > probeTimeout {
			t.Fatalf("Open took %v", d)
		}
		if files := treeFiles(t, root); len(files) != 0 {
			t.Fatalf("files written: %q", files)
		}
		release()
		synctest.Wait()
	})
}

// probingBackend's probe is a backend call, so it hangs when the fake does.
type probingBackend struct{ *fakekeychain.Fake }

func (p *probingBackend) Available(ctx context.Context) error {
	_, err := p.Get("probe", "probe")
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// guardCalls counts the goroutines, in the whole process, running a
// backend call for a guard.
func guardCalls() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "store.guarded[...].func")
}

// TestHungBackendOneGoroutine counts real goroutines,
// not the fake's calls: while a backend call hangs, however many more
// calls fail fast, the process has exactly one goroutine more running a
// backend call, and none once the call returns. Not parallel, so that no
// other test's guard goroutines are counted.
func TestHungBackendOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		before := guardCalls()
		f := fakekeychain.NewSecretService()
		s := newEnv(t, onBackend(f)).Store
		release := f.Block()
		defer release()
		ctx := context.Background()
		if err := s.Save(ctx, "k", canaryEntry()); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Save = %v, want ErrTimeout", err)
		}
		for range 20 {
			if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Load while hung = %v, want ErrTimeout", err)
			}
			if err := s.Save(ctx, "k", canaryEntry()); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Save while hung = %v, want ErrTimeout", err)
			}
		}
		synctest.Wait()
		if n := guardCalls() - before; n != 1 {
			t.Fatalf("%d goroutines running backend calls while hung, want 1", n)
		}
		release()
		synctest.Wait()
		if n := guardCalls() - before; n != 0 {
			t.Fatalf("%d goroutines running backend calls after the call returned, want 0", n)
		}
	})
}

// lateBackend's Get waits until release is closed and then returns value:
// a keychain call that outlives its caller's deadline.
type lateBackend struct {
	release <-chan struct{}
	value   string
}

func (b *lateBackend) Get(service, user string) (string, error) {
	<-b.release
	return b.value, nil
}

func (b *lateBackend) Set(service, user, secret string) error { return nil }

func (b *lateBackend) Delete(service, user string) error { return nil }

// TestGuardAbandonedCallNoRace (run it with -race): a keychain call that
// outlives its caller's deadline delivers its result while the caller is
// returning. The call is released by the deadline itself, from a goroutine
// nothing orders with the caller, so if the result travelled through a
// variable the caller also reads (as a closure writing a captured
// variable would), the race detector reports it. The caller gets either
// the timeout with no value, or, when the call won the race to the
// guard's lock, the call's whole result.
func TestGuardAbandonedCallNoRace(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		for i := range 20 {
			release := make(chan struct{})
			b := &lateBackend{release: release, value: fmt.Sprint("late value ", i)}
			k := &keychain{be: b, service: "svc", g: newGuard(), log: discard()}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			context.AfterFunc(ctx, func() { close(release) })
			v, err := k.getItem(ctx, "u")
			cancel()
			switch {
			case errors.Is(err, ErrTimeout) && v == "":
			case err == nil && v == b.value:
			default:
				t.Fatalf("round %d: getItem = %q, %v; want the timeout and no value, or the whole result", i, v, err)
			}
			synctest.Wait() // the abandoned call has returned
		}
	})
}

// TestGuardAbandonedResultDiscarded: the result of a call its caller gave
// up on is dropped. The caller got the timeout and no value; a caller
// that comes while the call is still blocked fails fast and gets no value
// either; once the call returns, the next caller gets the result of its
// own call (the current value), never the abandoned one.
func TestGuardAbandonedResultDiscarded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := fakekeychain.NewSecretService()
		if err := f.Set("svc", "u", "stale"); err != nil {
			t.Fatal(err)
		}
		k := &keychain{be: f, service: "svc", g: newGuard(), log: discard()}
		release := f.Block()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := k.getItem(ctx, "u")
		cancel()
		if !errors.Is(err, ErrTimeout) || v != "" {
			t.Fatalf("abandoned getItem = %q, %v; want ErrTimeout and no value", v, err)
		}
		if v, err := k.getItem(context.Background(), "u"); !errors.Is(err, ErrTimeout) || v != "" {
			t.Fatalf("getItem while the call is blocked = %q, %v; want the fail-fast ErrTimeout and no value", v, err)
		}
		release()
		synctest.Wait() // the abandoned call returned "stale" to nobody
		if err := f.Set("svc", "u", "fresh"); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if v, err := k.getItem(context.Background(), "u"); err != nil || v != "fresh" {
				t.Fatalf("getItem after the abandoned call returned = %q, %v; want its own result %q", v, err, "fresh")
			}
		}
		if c := f.Counts(); c.Get != 4 {
			t.Fatalf("%d Get calls, want 4 (the abandoned one and three of their own)", c.Get)
		}
	})
}
