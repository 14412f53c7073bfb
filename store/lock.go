package store

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// lockPoll is how often a contended file lock is retried.
const lockPoll = 15 * time.Millisecond

// lockScope names the storage a store's entries live in, for lock file
// names: two stores whose entries are distinct never share a lock, and two
// stores that may address the same entry always do. For the keychain that
// is the service name, lower-cased (Windows' Credential Manager compares
// target names case-insensitively). The file modes share one scope: a
// directory can be spelt in several ways (symbolic links, case-insensitive
// file systems), and sharing a lock too widely only serialises, whereas
// missing one would let two processes refresh the same token.
func lockScope(o *Options) string {
	scope := "file"
	if o.Mode == ModeKeychain {
		scope = "keychain\x00" + strings.ToLower(o.Service)
	}
	sum := sha256.Sum256([]byte("tokenward/store/lock-scope/v1\x00" + scope))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:16]
}

// lockFile returns the name of a lock file of item id in the lock
// directory: "<id>.<scope>.lock" for Lock, "<id>.<scope>.write.lock" for
// the write lock.
func (s *store) lockFile(id, suffix string) string {
	if s.lockScope == "" {
		return id + suffix
	}
	return id + "." + s.lockScope + suffix
}

// Lock implements Store.
//
// In the keychain and file modes the lock is an OS advisory lock (flock(2)
// on Unix, LockFileEx on Windows, via github.com/gofrs/flock) on the file
// <LockDir>/<item id>.<scope>.lock, where scope is a hash of the keychain
// service name (all file-mode stores share one scope), retried every 15 ms
// until it is free,
// Options.LockTimeout passes (ErrTimeout) or ctx ends. Such locks belong to
// an open file, so two Lock calls in one process exclude each other too,
// and the kernel releases the lock of a process that dies, even by SIGKILL.
// Processes exclude each other only if they use the same lock directory:
// by default the user's cache directory, so two processes of one user with
// different XDG_CACHE_HOME (or HOME) values, or different Options.LockDir,
// do not, even though they share the keychain. In ModeMemory the lock is
// in-process only.
func (s *store) Lock(ctx context.Context, name string) (func() error, error) {
	id, err := checkName(name)
	if err != nil {
		return nil, withOp("lock", err)
	}
	if s.lockDir == "" {
		lctx, cancel := context.WithTimeout(ctx, s.lockTimeout)
		defer cancel()
		if err := s.locks.lock(lctx, id); err != nil {
			return nil, withOp("lock", err)
		}
		var once sync.Once
		return func() error {
			once.Do(func() { s.locks.unlock(id) })
			return nil
		}, nil
	}
	unlock, err := s.fileLock(ctx, s.lockFile(id, ".lock"), s.lockTimeout)
	if err != nil {
		return nil, withOp("lock", err)
	}
	s.log.Debug("store: locked", "item", id)
	return unlock, nil
}

// writeLock serialises writers of one entry across processes. It uses its
// own lock file, so a caller holding Lock(name) can still Save(name).
func (s *store) writeLock(ctx context.Context, id string) (func() error, error) {
	if s.lockDir == "" {
		return func() error { return nil }, nil
	}
	return s.fileLock(ctx, s.lockFile(id, ".write.lock"), s.timeout)
}

// fileLock takes an exclusive lock on file in the lock directory.
func (s *store) fileLock(ctx context.Context, file string, wait time.Duration) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx, "")
	}
	if err := os.MkdirAll(s.lockDir, 0o700); err != nil {
		return nil, unavailable(lockDirUnavailable, "cannot create the lock directory", err)
	}
	fl := flock.New(filepath.Join(s.lockDir, file), flock.SetPermissions(0o600))
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		ok, err := fl.TryLock()
		if err != nil {
			return nil, unavailable(lockDirUnavailable, "cannot lock a file in the lock directory", err)
		}
		if ok {
			var once sync.Once
			var uerr error
			return func() error {
				once.Do(func() { uerr = fl.Unlock() })
				return uerr
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctxError(ctx, "waiting for a lock held by another process or goroutine")
		case <-deadline.C:
			return nil, &opError{kind: ErrTimeout, detail: "another process or goroutine held the lock longer than the lock timeout",
				cause: context.DeadlineExceeded}
		case <-tick.C:
		}
	}
}
