package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
)

// CheckWrite implements Store.
func (s *store) CheckWrite(ctx context.Context) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.b.check(ctx); err != nil {
		return s.failed("check write", "", err)
	}
	// Every Save takes a write lock, whose file lives in the lock
	// directory. Checked after the storage itself, so that a locked or
	// absent keychain leaves nothing on disk.
	if s.lockDir != "" {
		if err := ctx.Err(); err != nil {
			return withOp("check write", ctxError(ctx, ""))
		}
		if err := os.MkdirAll(s.lockDir, 0o700); err != nil {
			return withOp("check write", unavailable(lockDirUnavailable, "cannot create the lock directory", err))
		}
		if err := probeFile(s.lockDir); err != nil {
			return withOp("check write", unavailable(lockDirUnavailable, "cannot create a file in the lock directory", err))
		}
	}
	s.log.Debug("store: write check passed", slog.String("mode", string(s.mode)))
	return nil
}

// probeFile creates a temporary file in dir and removes it again. A crash
// in between leaves an empty file: in the store directory Open sweeps it
// like any abandoned temporary file; in the lock directory it stays.
func probeFile(dir string) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"check-*"+tmpSuffix)
	if err != nil {
		return err
	}
	werr := f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return err
	}
	return werr
}

// checkItemPrefix starts the name of the keychain item of a write check.
// Entry items are "tw1-" and 52 base32 characters, with no further dash,
// so no check item can ever be mistaken for an entry or overwrite one.
const checkItemPrefix = "tw1-check-"

// check implements blobs: it writes an item of its own, reads it back and
// deletes it, each under the guard and ctx. The name and the value are
// random (and secret-free), so concurrent checks of several processes
// never see each other's items. An item whose delete failed (a check that
// timed out while an unlock prompt was open can still land afterwards) is
// deleted by the next check of this store; only a crash between the write
// and the delete leaves one behind for good.
func (k *keychain) check(ctx context.Context) error {
	k.checkMu.Lock()
	defer k.checkMu.Unlock()
	kept := k.unswept[:0]
	for _, user := range k.unswept {
		if err := k.deleteItem(ctx, user); err != nil {
			kept = append(kept, user)
		}
	}
	k.unswept = kept
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return unavailable(noRandomness, "", err)
	}
	user := checkItemPrefix + hex.EncodeToString(b[:8])
	value := "tokenward write check " + hex.EncodeToString(b[8:])
	err := k.setVerified(ctx, user, value)
	// Delete the item even when the write seemed to fail: it may have
	// landed, or land later.
	if derr := k.deleteItem(ctx, user); derr != nil {
		k.unswept = append(k.unswept, user)
		if err == nil {
			err = derr
		}
	}
	return err
}

// check implements blobs: a temporary file in the store directory, after
// the checks every write makes (a directory that is private to the user).
func (f *files) check(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	if err := f.checkDir(); err != nil {
		return err
	}
	if err := probeFile(f.dir); err != nil {
		return unavailable(storeDirUnavailable, "cannot create a file in the store directory", err)
	}
	return nil
}

// check implements blobs: memory can always be written.
func (m *memory) check(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	return nil
}
