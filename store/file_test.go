package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
)

func TestFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows uses ACLs, not mode bits")
	}
	t.Parallel()
	ctx := context.Background()
	for _, m := range fileModes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			if err := e.Save(ctx, "k", canaryEntry()); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(e.dir)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
			}
			files := treeFiles(t, e.dir)
			if len(files) != 1 {
				t.Fatalf("files %q, want one (no temporary file left)", files)
			}
			p := filepath.Join(e.dir, files[0])
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Fatalf("file mode %v, want 0600", fi.Mode().Perm())
			}

			// A group/world-readable file is refused, for reading and writing.
			os.Chmod(p, 0o644)
			if _, err := e.Load(ctx, "k"); !errors.Is(err, ErrInsecurePermissions) {
				t.Fatalf("Load of a 0644 file = %v, want ErrInsecurePermissions", err)
			}
			if err := e.Save(ctx, "k", &Entry{AccessToken: "new"}); !errors.Is(err, ErrInsecurePermissions) {
				t.Fatalf("Save over a 0644 file = %v, want ErrInsecurePermissions", err)
			}
			os.Chmod(p, 0o600)

			// So is a directory others can enter, on Open and on use.
			os.Chmod(e.dir, 0o755)
			if _, err := e.Load(ctx, "k"); !errors.Is(err, ErrInsecurePermissions) {
				t.Fatalf("Load in a 0755 dir = %v, want ErrInsecurePermissions", err)
			}
			if _, err := Open(ctx, e.opts...); !errors.Is(err, ErrInsecurePermissions) {
				t.Fatalf("Open of a 0755 dir = %v, want ErrInsecurePermissions", err)
			}
			os.Chmod(e.dir, 0o700)

			// A symlink is not followed.
			os.Rename(p, p+".real")
			os.Symlink(p+".real", p)
			if _, err := e.Load(ctx, "k"); !errors.Is(err, ErrInsecurePermissions) {
				t.Fatalf("Load through a symlink = %v, want ErrInsecurePermissions", err)
			}
		})
	}
}

func TestEncryptedFileNeedsPassphrase(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	_, err := Open(context.Background(), testOptions(ModeEncryptedFile, root+"/d", root+"/l", nil), func(o *Options) { o.Passphrase = "" })
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), EnvPassphrase) {
		t.Fatalf("Open = %v, want ErrInvalidConfig naming %s", err, EnvPassphrase)
	}
	if files := treeFiles(t, root); len(files) != 0 {
		t.Fatalf("files written: %q", files)
	}
	// From the environment.
	_, err = Open(context.Background(), testOptions(ModeEncryptedFile, root+"/d", root+"/l", nil), func(o *Options) {
		o.Passphrase = ""
		o.getenv = func(k string) string {
			if k == EnvPassphrase {
				return "from env"
			}
			return ""
		}
	})
	if err != nil {
		t.Fatalf("Open with %s set: %v", EnvPassphrase, err)
	}
}

// TestPlaintextWarns: plaintext-file warns through the logger on every
// Open and says so in Status.
func TestPlaintextWarns(t *testing.T) {
	t.Parallel()
	log, buf := newLogger()
	e := newEnv(t, plaintextFileMode, func(o *Options) { o.Logger = log })
	for i := 1; i <= 3; i++ {
		s := e.Store
		if i > 1 {
			s = e.reopen(t)
		}
		if n := strings.Count(buf.String(), "level=WARN"); n != i {
			t.Fatalf("after %d opens, %d warnings", i, n)
		}
		st := s.Status()
		if st.Mode != ModePlaintextFile || st.Encrypted || st.Warning == "" || !strings.Contains(st.String(), "WARNING") {
			t.Fatalf("Status = %+v", st)
		}
	}
}

// TestFileDurableWrite runs the file modes with fsync on (the default).
func TestFileDurableWrite(t *testing.T) {
	t.Parallel()
	for _, m := range fileModes() {
		e := newEnv(t, m, func(o *Options) { o.noSync = false })
		ctx := context.Background()
		want := canaryEntry()
		if err := e.Save(ctx, "k", want); err != nil {
			t.Fatal(err)
		}
		got, err := e.reopen(t).Load(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		mustEqualEntry(t, got, want)
		if err := e.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if files := treeFiles(t, e.dir); len(files) != 0 {
			t.Fatalf("%s: files left: %q", m.name, files)
		}
	}
}

// TestFileCrashAtEveryStep (the file modes' crash safety): a writer that dies
// at each step of the atomic file write (temporary file created, half
// written, written, closed, renamed) leaves a reader the complete old
// entry or the complete new one, never a mix or a corrupt file; the next
// Save works and the store holds one token file. The keychain modes have
// their own crash tests (TestCrashInjection, TestKeychainCrash).
func TestFileCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	steps := []string{"created", "half-written", "written", "closed", "renamed"}
	for _, m := range fileModes() {
		for _, first := range []bool{false, true} {
			for _, step := range steps {
				name := fmt.Sprintf("%s/%s/first-write=%v", m.name, step, first)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					var armed atomic.Bool
					var crashed atomic.Int32
					e := newEnv(t, m, func(o *Options) {
						o.noSync = false
						o.crashAt = func(s string) bool {
							if armed.Load() && s == step {
								crashed.Add(1)
								return true
							}
							return false
						}
					})
					ctx := context.Background()
					old := canaryEntry()
					if !first {
						if err := e.Save(ctx, "k", old); err != nil {
							t.Fatal(err)
						}
					}
					newer := canaryEntry()
					newer.AccessToken = canary.New("new-access-token")
					armed.Store(true)
					if err := e.Save(ctx, "k", newer); err == nil {
						t.Fatal("Save succeeded through a crash")
					}
					armed.Store(false)
					if crashed.Load() != 1 {
						t.Fatalf("the crash seam fired %d times, want 1", crashed.Load())
					}

					// A restarted process reads the old or the new entry.
					got, err := e.reopen(t).Load(ctx, "k")
					switch {
					case step == "renamed":
						if err != nil {
							t.Fatalf("Load after a crash past the rename = %v", err)
						}
						mustEqualEntry(t, got, newer)
					case first:
						if !errors.Is(err, ErrNotFound) {
							t.Fatalf("Load after a crashed first write = %v, %v; want ErrNotFound", got, err)
						}
					default:
						if err != nil {
							t.Fatalf("Load after the crash = %v", err)
						}
						mustEqualEntry(t, got, old)
					}

					// Life goes on: the next Save and Load work.
					latest := canaryEntry()
					latest.AccessToken = canary.New("latest-access-token")
					s := e.reopen(t)
					if err := s.Save(ctx, "k", latest); err != nil {
						t.Fatalf("Save after the crash: %v", err)
					}
					got, err = s.Load(ctx, "k")
					if err != nil {
						t.Fatal(err)
					}
					mustEqualEntry(t, got, latest)
					var tokens int
					for _, f := range treeFiles(t, e.dir) {
						if !strings.HasPrefix(filepath.Base(f), tmpPrefix) {
							tokens++
						}
					}
					if tokens != 1 {
						t.Fatalf("%d token files, want 1: %q", tokens, treeFiles(t, e.dir))
					}
				})
			}
		}
	}
}
