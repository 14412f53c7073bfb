package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
)

// Environment of the keychain writer helper process.
const (
	helperService = "TOKENWARD_STORE_HELPER_SERVICE"
	helperWriter  = "TOKENWARD_STORE_HELPER_WRITER"
)

// multiprocName is the entry the writer processes rotate.
const multiprocName = "rotated by several processes"

func init() { helperModes["keychain-writer"] = keychainWriterMain }

// writerEntry is the entry writer w saves at step i: 3, 5 or 7 chunks by
// turns, so that each save cleans up a generation of another size, with
// canary secrets and its origin in Subject and Extra, which a reader
// checks against each other.
func writerEntry(w string, i int) *Entry {
	e := canaryEntry()
	e.Subject = fmt.Sprintf("writer %s step %d", w, i)
	e.Extra = map[string]string{"origin": e.Subject, "pad": strings.Repeat("p", []int{2000, 5000, 8000}[i%3])}
	return e
}

// keychainWriterMain is one writer process of
// TestKeychainConcurrentProcesses: it saves multiprocName in the OS
// keychain three times and deletes it once, over and over, until its stdin
// is closed; it prints "ready" after its first step, "step" after each
// step and its counts at the end, and fails on the first error.
func keychainWriterMain() error {
	ctx := context.Background()
	w := os.Getenv(helperWriter)
	s, err := Open(ctx, func(o *Options) {
		o.Mode = ModeKeychain
		o.Service = os.Getenv(helperService)
		o.LockDir = os.Getenv(helperLockDir)
		o.Timeout = time.Minute // four writers and a reader on one keychain
		o.probeTimeout = backstop
	})
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	saves, deletes := 0, 0
	for i := 0; ; i++ {
		select {
		case <-stop:
			fmt.Printf("saves %d deletes %d\n", saves, deletes)
			return nil
		default:
		}
		if i%4 == 3 {
			if err := s.Delete(ctx, multiprocName); err != nil {
				return fmt.Errorf("writer %s: delete %d: %w", w, i, err)
			}
			deletes++
		} else {
			if err := s.Save(ctx, multiprocName, writerEntry(w, i)); err != nil {
				return fmt.Errorf("writer %s: save %d: %w", w, i, err)
			}
			saves++
		}
		if i == 0 {
			fmt.Println("ready")
		}
		fmt.Println("step")
	}
}

// vanishCounter counts the reads of a Backend that failed because the item
// vanished between the search and the read.
type vanishCounter struct {
	Backend
	vanished atomic.Int32
}

func (v *vanishCounter) Get(service, user string) (string, error) {
	s, err := v.Backend.Get(service, user)
	if isNoSuchObject(err) {
		v.vanished.Add(1)
	}
	return s, err
}

// TestKeychainConcurrentProcesses: four writer processes save, rotate and
// delete one entry in gnome-keyring without pause while this process loads
// it. Every Load returns a whole entry some writer saved, or ErrNotFound
// (the writers delete it now and then); none fails, although items vanish
// between go-keyring's search and read and chunks are cleaned up under the
// reader.
func TestKeychainConcurrentProcesses(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	vc := &vanishCounter{Backend: osKeyring{}}
	e := newEnv(t, osKeychain(vc))
	reader, service := e.Store, e.service
	lockDir := reader.(*store).lockDir
	// The reader goes on until the writers have taken wantSteps steps
	// after it started: a measure of writer activity, not of time, so a
	// slow machine runs longer instead of testing less. maxLoads only
	// bounds a run whose writers stall.
	const writers, wantSteps, maxLoads = 4, 24, 20000

	var steps atomic.Int32
	ready := make(chan int, writers)
	type summary struct {
		w, saves, deletes int
		err               error
	}
	summaries := make(chan summary, writers)
	var stdins []io.WriteCloser
	for w := range writers {
		cmd := helperCmd(t, "keychain-writer", lockDir, helperService+"="+service, helperWriter+"="+strconv.Itoa(w))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		stdins = append(stdins, stdin)
		go func() {
			sum := summary{w: w}
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				switch line := sc.Text(); {
				case line == "ready":
					ready <- w
				case line == "step":
					steps.Add(1)
				default:
					fmt.Sscanf(line, "saves %d deletes %d", &sum.saves, &sum.deletes)
				}
			}
			sum.err = cmd.Wait()
			summaries <- sum
		}()
	}
	for range writers {
		select {
		case <-ready:
		case sum := <-summaries:
			t.Fatalf("writer %d ended before its first step: %v", sum.w, sum.err)
		}
	}

	loads, found, notFound, failed := 0, 0, 0, 0
	seen := map[string]bool{}
	for start := steps.Load(); steps.Load()-start < wantSteps && loads < maxLoads; {
		loads++
		got, err := reader.Load(ctx, multiprocName)
		switch {
		case err == nil:
			found++
			seen[got.Subject] = true
			if !strings.HasPrefix(got.Subject, "writer ") || got.Extra["origin"] != got.Subject ||
				!strings.HasPrefix(got.RefreshToken, canary.Prefix) {
				failed++
				t.Errorf("Load %d returned an entry no writer saved: subject %q", loads, got.Subject)
			}
		case errors.Is(err, ErrNotFound):
			notFound++
		default:
			failed++
			if failed <= 5 {
				t.Errorf("Load %d: %v", loads, err)
			}
		}
	}

	for _, in := range stdins {
		in.Close()
	}
	saves, deletes := 0, 0
	for range writers {
		sum := <-summaries
		if sum.err != nil {
			t.Errorf("writer %d: %v", sum.w, sum.err)
		}
		saves, deletes = saves+sum.saves, deletes+sum.deletes
	}
	t.Logf("%d loads: %d found (%d distinct entries), %d not found, %d failed; %d item reads found the item gone after the search; writers: %d saves, %d deletes",
		loads, found, len(seen), notFound, failed, vc.vanished.Load(), saves, deletes)
	if failed != 0 {
		t.Fatalf("%d of %d Loads failed while other processes wrote the entry", failed, loads)
	}
	if len(seen) < 2 || deletes == 0 {
		t.Fatalf("the writers did not rotate the entry under the reader (%d distinct entries seen, %d deletes)", len(seen), deletes)
	}
	if err := reader.Delete(ctx, multiprocName); err != nil {
		t.Fatal(err)
	}
}
