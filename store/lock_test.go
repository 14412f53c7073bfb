package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// Environment of the helper process (the re-executed test binary).
const (
	helperEnv     = "TOKENWARD_STORE_HELPER" // "contend", "hold", "wait" or a key of helperModes
	helperLockDir = "TOKENWARD_STORE_HELPER_LOCKDIR"
	helperLog     = "TOKENWARD_STORE_HELPER_LOG"
	helperRounds  = "TOKENWARD_STORE_HELPER_ROUNDS"
	helperKey     = "name with spaces/../and é"
)

// helperModes holds the helper processes other test files define, by the
// value of helperEnv that selects them.
var helperModes = map[string]func() error{}

// TestHelperProcess is not a test: the lock and keychain tests re-execute
// the test binary with -test.run=^TestHelperProcess$ and helperEnv set, and
// it then plays one other process. Without helperEnv it does nothing.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	err := helperMain(mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func helperMain(mode string) error {
	if h, ok := helperModes[mode]; ok {
		return h()
	}
	ctx := context.Background()
	// The lock of the keychain and file modes; no data is involved.
	fs := &store{lockDir: os.Getenv(helperLockDir), lockTimeout: time.Minute, timeout: time.Minute, log: discard()}
	switch mode {
	case "contend":
		rounds, _ := strconv.Atoi(os.Getenv(helperRounds))
		logf, err := os.OpenFile(os.Getenv(helperLog), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer logf.Close()
		pid := os.Getpid()
		for i := range rounds {
			unlock, err := fs.Lock(ctx, helperKey)
			if err != nil {
				return err
			}
			// Each line is one write(2) to an O_APPEND file; a second
			// process inside the lock would interleave its lines.
			fmt.Fprintf(logf, "enter %d %d\n", pid, i)
			logf.Sync()
			fmt.Fprintf(logf, "exit %d %d\n", pid, i)
			logf.Sync()
			if err := unlock(); err != nil {
				return err
			}
		}
	case "hold":
		unlock, err := fs.Lock(ctx, helperKey)
		if err != nil {
			return err
		}
		defer unlock()
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // hold until killed
	case "wait":
		// Prove the lock is held by someone else before waiting for it.
		if _, err := fs.fileLock(ctx, fs.lockFile(itemID(helperKey), ".lock"), time.Millisecond); !errors.Is(err, ErrTimeout) {
			return fmt.Errorf("lock not held by the holder: %v", err)
		}
		logf, err := os.OpenFile(os.Getenv(helperLog), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer logf.Close()
		fmt.Println("waiting")
		unlock, err := fs.Lock(ctx, helperKey)
		if err != nil {
			return err
		}
		pid := os.Getpid()
		fmt.Fprintf(logf, "enter %d\n", pid)
		logf.Sync()
		fmt.Println("acquired")
		io.Copy(io.Discard, os.Stdin) // hold until the test closes stdin
		fmt.Fprintf(logf, "exit %d\n", pid)
		logf.Sync()
		if err := unlock(); err != nil {
			return err
		}
	}
	return nil
}

func helperCmd(t *testing.T, mode, lockDir string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	// GORACE: a race-enabled child would otherwise sleep 1 s at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperLockDir+"="+lockDir, "GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestLockProcesses: 2 and 5 processes contend for one key's lock (as
// several CLI invocations refreshing one token would); the shared log shows
// exactly one inside at a time.
func TestLockProcesses(t *testing.T) {
	t.Parallel()
	for _, procs := range []int{2, 5} {
		t.Run(fmt.Sprint(procs), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			logPath := filepath.Join(dir, "log")
			os.WriteFile(logPath, nil, 0o600)
			const rounds = 20
			var cmds []*exec.Cmd
			for range procs {
				cmd := helperCmd(t, "contend", filepath.Join(dir, "locks"), helperLog+"="+logPath, helperRounds+"="+fmt.Sprint(rounds))
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, cmd)
			}
			for _, c := range cmds {
				if err := c.Wait(); err != nil {
					t.Fatalf("helper: %v", err)
				}
			}
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2*procs*rounds {
				t.Fatalf("%d lines, want %d", len(lines), 2*procs*rounds)
			}
			pids := map[string]bool{}
			for i := 0; i < len(lines); i += 2 {
				enter, exit := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if enter[0] != "enter" || exit[0] != "exit" || enter[1] != exit[1] || enter[2] != exit[2] {
					t.Fatalf("lines %d-%d overlap: %q, %q", i, i+1, lines[i], lines[i+1])
				}
				pids[enter[1]] = true
			}
			if len(pids) != procs {
				t.Fatalf("%d processes entered, want %d", len(pids), procs)
			}
		})
	}
}

// TestLockKilledHolder: the holder is killed with SIGKILL while one or
// four other processes wait; the kernel releases a dead process's lock, so
// one of them gets it (within one poll interval of the release; the time
// is logged, and only a generous backstop bounds it, since a loaded
// machine can delay the kill and the helpers), and then they take it one
// at a time (each holds it until the test lets it go, and a shared log
// shows no two inside at once).
func TestLockKilledHolder(t *testing.T) {
	t.Parallel()
	for _, waiters := range []int{1, 4} {
		t.Run(fmt.Sprint(waiters, "-waiters"), func(t *testing.T) {
			t.Parallel()
			testLockKilledHolder(t, waiters)
		})
	}
}

func testLockKilledHolder(t *testing.T, waiters int) {
	dir := t.TempDir()
	lockDir := filepath.Join(dir, "locks")
	logPath := filepath.Join(dir, "log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	holder := helperCmd(t, "hold", lockDir)
	hin, _ := holder.StdinPipe()
	defer hin.Close()
	hout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	if line, _ := bufio.NewReader(hout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("holder said %q", line)
	}

	// While it holds the lock, this process cannot take it.
	s := &store{lockDir: lockDir, lockTimeout: 50 * time.Millisecond, log: discard()}
	if _, err := s.Lock(context.Background(), helperKey); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Lock while held = %v, want ErrTimeout", err)
	}

	// Each waiter reports "acquired" on this channel with its index.
	acquired := make(chan int, waiters)
	stdins := make([]io.WriteCloser, waiters)
	cmds := make([]*exec.Cmd, waiters)
	for i := range waiters {
		w := helperCmd(t, "wait", lockDir, helperLog+"="+logPath)
		stdins[i], _ = w.StdinPipe()
		wout, _ := w.StdoutPipe()
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = w
		defer w.Process.Kill()
		wr := bufio.NewReader(wout)
		if line, _ := wr.ReadString('\n'); line != "waiting\n" {
			t.Fatalf("waiter %d said %q", i, line)
		}
		go func() {
			if line, _ := wr.ReadString('\n'); line == "acquired\n" {
				acquired <- i
			}
		}()
	}

	killed := time.Now()
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for n := range waiters {
		select {
		case i := <-acquired:
			if seen[i] {
				t.Fatalf("waiter %d acquired twice", i)
			}
			seen[i] = true
			if n == 0 {
				t.Logf("a waiter got the lock %v after SIGKILL of the holder", time.Since(killed))
			}
			stdins[i].Close() // let it go; the next waiter may enter
		case <-time.After(backstop):
			t.Fatalf("%d of %d waiters got the lock within %v", n, waiters, backstop)
		}
	}
	for i, w := range cmds {
		if err := w.Wait(); err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	holder.Wait()

	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*waiters {
		t.Fatalf("log has %d lines, want %d: %q", len(lines), 2*waiters, lines)
	}
	pids := map[string]bool{}
	for i := 0; i < len(lines); i += 2 {
		enter, exit := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if enter[0] != "enter" || exit[0] != "exit" || enter[1] != exit[1] {
			t.Fatalf("lines %d-%d: two waiters inside at once: %q, %q", i, i+1, lines[i], lines[i+1])
		}
		pids[enter[1]] = true
	}
	if len(pids) != waiters {
		t.Fatalf("%d waiters entered, want %d", len(pids), waiters)
	}
}

// TestLockInProcess: two Lock calls in one process exclude each other in
// every mode; waits honour LockTimeout and ctx; unlock is idempotent.
func TestLockInProcess(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m, func(o *Options) { o.LockTimeout = 30 * time.Millisecond })
			ctx := context.Background()
			unlock, err := e.Lock(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Lock(ctx, "k"); !errors.Is(err, ErrTimeout) {
				t.Fatalf("second Lock = %v, want ErrTimeout", err)
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := e.Lock(cctx, "k"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Lock with a canceled ctx = %v", err)
			}
			// Another name is independent, and Save works under the lock.
			u2, err := e.Lock(ctx, "other")
			if err != nil {
				t.Fatal(err)
			}
			u2()
			if err := e.Save(ctx, "k", &Entry{AccessToken: "x"}); err != nil {
				t.Fatalf("Save while holding Lock: %v", err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			unlock()
			u3, err := e.Lock(ctx, "k")
			if err != nil {
				t.Fatalf("Lock after unlock: %v", err)
			}
			u3()
			if _, err := e.Lock(ctx, ""); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Lock(\"\") = %v", err)
			}
			if m.mode != ModeMemory {
				for _, f := range treeFiles(t, e.lockDir) {
					if !strings.HasPrefix(f, "tw1-") {
						t.Fatalf("lock file %q is not an encoded id", f)
					}
				}
			}
		})
	}
}

// TestLockGoroutines: many goroutines take one lock; at most one is inside.
func TestLockGoroutines(t *testing.T) {
	t.Parallel()
	for _, m := range []testMode{plaintextFileMode, memoryMode} {
		e := newEnv(t, m)
		var inside, total atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					unlock, err := e.Lock(context.Background(), "k")
					if err != nil {
						t.Error(err)
						return
					}
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d goroutines inside the lock", n)
					}
					total.Add(1)
					inside.Add(-1)
					unlock()
				}
			})
		}
		wg.Wait()
		if total.Load() != 40 {
			t.Fatalf("%s: %d entries, want 40", m.name, total.Load())
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
		return newEnv(t, keychainMode(fakekeychain.Generic), func(o *Options) {
			o.LockDir, o.Service, o.LockTimeout = lockDir, service, 50*time.Millisecond
		}).Store
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
	sharedLocks := func(o *Options) { o.LockDir, o.LockTimeout = lockDir, 50*time.Millisecond }
	f1, f2 := newEnv(t, encryptedFileMode, sharedLocks), newEnv(t, plaintextFileMode, sharedLocks)
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
	e := newEnv(t, keychainMode(fakekeychain.Generic), func(o *Options) { o.LockDir = filepath.Join(blocker, "locks") })
	err := e.Save(ctx, "k", &Entry{AccessToken: "a"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "lock directory") || strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("Save = %v; want ErrUnavailable about the lock directory", err)
	}
}
