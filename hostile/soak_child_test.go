package hostile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// faultyStore injects failures into a child's store: reads and writes that
// fail, writes that land but report failure (as a verify error would),
// slow locks and lock timeouts.
type faultyStore struct {
	store.Store
	on     atomic.Bool
	mu     sync.Mutex
	rng    *rand.Rand
	counts map[string]int
}

// roll decides with probability p whether to inject the fault what, and
// counts it.
func (f *faultyStore) roll(what string, p float64) bool {
	if !f.on.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() >= p {
		return false
	}
	f.counts[what]++
	return true
}

// injected returns an injected store error matching kind.
func injected(what string, kind error) error {
	return fmt.Errorf("hostile: injected store fault (%s): %w", what, kind)
}

// Load fails at random, else loads.
func (f *faultyStore) Load(ctx context.Context, name string) (*store.Entry, error) {
	if f.roll("load-fails", 0.08) {
		return nil, injected("load", store.ErrUnavailable)
	}
	return f.Store.Load(ctx, name)
}

// Save fails at random before or after writing, else saves.
func (f *faultyStore) Save(ctx context.Context, name string, e *store.Entry) error {
	if f.roll("save-fails", 0.08) {
		return injected("save", store.ErrUnavailable)
	}
	err := f.Store.Save(ctx, name, e)
	if err == nil && f.roll("save-lands-but-fails", 0.05) {
		return injected("save after write", store.ErrWriteVerify)
	}
	return err
}

// Lock times out or is slow at random, else locks.
func (f *faultyStore) Lock(ctx context.Context, name string) (func() error, error) {
	if f.roll("lock-times-out", 0.04) {
		return nil, injected("lock", store.ErrTimeout)
	}
	if f.roll("lock-slow", 0.10) {
		t := time.NewTimer(time.Duration(20+rand.IntN(130)) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return f.Store.Lock(ctx, name)
}

// errorKind names the sentinel an error matches, for the tallies.
func errorKind(err error) string {
	for _, k := range []struct {
		name string
		err  error
	}{
		{"reauth-required", client.ErrReauthRequired}, {"rate-limited", client.ErrRateLimited},
		{"temporarily-unavailable", client.ErrTemporarilyUnavailable}, {"timeout", client.ErrTokenEndpointTimeout},
		{"network", client.ErrNetwork}, {"store-unavailable", store.ErrUnavailable}, {"store-timeout", store.ErrTimeout},
		{"store-locked", store.ErrLocked}, {"persist-failed", refresh.ErrPersistFailed}, {"bad-response", client.ErrBadResponse},
		{"deadline", context.DeadlineExceeded},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "untyped"
}

// soakChild is one process of TestSoak: goroutines call the API through
// the client until the deadline, store faults are injected until the quiet
// phase, then everything is closed and the goroutines counted.
func soakChild() int {
	e := childEnvFromOS()
	dur, _ := time.ParseDuration(os.Getenv("HOSTILE_SOAK_DURATION"))
	goroutines := envInt("HOSTILE_SOAK_GOROUTINES", 8)
	seed, _ := strconv.ParseUint(os.Getenv("HOSTILE_SOAK_SEED"), 10, 64)
	logFile, err := os.Create(os.Getenv("HOSTILE_SOAK_LOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logFile.Close()
	errFile, err := os.Create(os.Getenv("HOSTILE_SOAK_ERRORS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer errFile.Close()
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, logFile}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	res := soakResult{Status: map[int]int{}, Errors: map[string]int{}, Events: map[string]int{}}
	var resMu sync.Mutex
	seen := map[string]bool{}
	record := func(err error) {
		if err == nil {
			return
		}
		resMu.Lock()
		defer resMu.Unlock()
		if seen[err.Error()] {
			return
		}
		seen[err.Error()] = true
		res.ErrorsRecorded++
		fmt.Fprintf(errFile, "%v\n%+v\n%#v\n", err, err, err)
	}

	ctx := context.Background()
	baseline := runtime.NumGoroutine()
	inner, err := e.openStore(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store.Open:", err)
		return 1
	}
	fs := &faultyStore{Store: inner, rng: rand.New(rand.NewPCG(seed, 1)), counts: map[string]int{}}
	fs.on.Store(true)
	cfg := e.childConfig(fs)
	cfg.Logger = logger
	cfg.HTTP = client.HTTPSettings{Timeout: 3 * time.Second, RetryWaitMin: 50 * time.Millisecond, RetryWaitMax: time.Second}
	cfg.RefreshOptions = append(cfg.RefreshOptions, func(o *refresh.Options) {
		o.DisableIdleRefresh = false
		o.RetryBackoffMin, o.RetryBackoffMax = 100*time.Millisecond, time.Second
	})
	cfg.Events = func(ev client.Event) {
		resMu.Lock()
		res.Events[string(ev.Kind)]++
		if ev.Kind == client.EventReauthRequired {
			res.Reauth, res.ReauthEvents = 1, res.ReauthEvents+1
		}
		resMu.Unlock()
		record(ev.Err)
	}
	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		fmt.Fprintln(os.Stderr, "client.New:", err)
		return 1
	}
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("READY")
	// Wait for the parent's start, so that every process starts together.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "no start signal:", err)
		return 1
	}
	start := time.Now()
	end := start.Add(dur + soakQuiet)
	time.AfterFunc(dur, func() { fs.on.Store(false) })

	var wg sync.WaitGroup
	lat := make([][]int64, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)+2))
			for time.Now().Before(end) {
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var status int
				var err error
				if g%4 == 3 {
					_, err = c.Token(rctx) // some goroutines use the token directly
					status = http.StatusOK
				} else {
					var req *http.Request
					req, _ = http.NewRequestWithContext(rctx, http.MethodGet, e.Resource+"/soak", nil)
					var resp *http.Response
					if resp, err = hc.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						status = resp.StatusCode
					}
				}
				cancel()
				d := time.Since(t0)
				lat[g] = append(lat[g], d.Milliseconds())
				resMu.Lock()
				res.Requests++
				switch {
				case err != nil:
					res.Errors[errorKind(err)]++
				case status != http.StatusOK:
					res.Status[status]++
				default:
					res.OK++
				}
				resMu.Unlock()
				record(err)
				t := time.NewTimer(time.Duration(20+rng.IntN(60)) * time.Millisecond) // pacing, not synchronisation
				<-t.C
			}
		}()
	}
	wg.Wait()
	c.Close()

	// Goroutine leak check: bounded wait for the count to settle.
	leak := 0
	if !eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= baseline }) {
		leak = runtime.NumGoroutine() - baseline
		buf := make([]byte, 1<<20)
		res.LeakedStacks = string(buf[:runtime.Stack(buf, true)])
	}
	res.GoroutineLeak = leak
	var all []int64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if n := len(all); n > 0 {
		res.Latency = []int64{all[n/2], all[n*99/100], all[n-1]}
	}
	fs.mu.Lock()
	res.StoreFaults = fs.counts
	fs.mu.Unlock()
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
	return 0
}

// lockedWriter serialises writes to w (the child's log file).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

// Write writes p under the lock.
func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
