package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// files keeps one file per entry in a directory (ModeEncryptedFile,
// ModePlaintextFile). File names are item ids, never names, so no name can
// leave the directory. Files are 0600 in a 0700 directory, written to a
// temporary file, fsynced and renamed over the old one, and read back.
type files struct {
	dir    string
	ext    string
	seal   *sealer // nil: plaintext
	noSync bool    // test seam: no fsync
	// crash is a test seam: when it returns true for a step of
	// writeAtomic, the write stops there as if the process had died.
	crash func(step string) bool
}

const (
	tmpPrefix = ".tw-"
	tmpSuffix = ".tmp"
	// staleTmp is the age after which an abandoned temporary file (from a
	// process that died between create and rename) is removed on Open.
	staleTmp = 10 * time.Minute
)

// openFiles creates (0700) or checks the directory of a file mode.
func openFiles(o *Options) (*files, Status, error) {
	dir, err := o.dataDir()
	if err != nil {
		return nil, Status{}, err
	}
	f := &files{dir: dir, ext: ".json", noSync: o.noSync, crash: o.crashAt}
	st := Status{Mode: o.Mode, Location: dir, Persistent: true}
	if o.Mode == ModeEncryptedFile {
		f.ext = ".twenc"
		f.seal = newSealer(o.Passphrase, o.kdfLogN)
		st.Backend = "encrypted file (AES-256-GCM, scrypt passphrase key)"
		st.Encrypted = true
	} else {
		st.Backend = "plaintext file"
		st.Warning = "tokens are stored unencrypted in " + dir + "; anyone who can read these files can use the tokens"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, st, unavailable(storeDirUnavailable, "cannot create the store directory; set Options.Dir", err)
	}
	if err := f.checkDir(); err != nil {
		return nil, st, err
	}
	f.sweepTemps()
	if f.seal != nil {
		// The passphrase key is derived now, not in the first Load or Save,
		// whose deadline it would eat into.
		if err := f.seal.prepare(dir, f.ext); err != nil {
			return nil, st, err
		}
	}
	return f, st, nil
}

func (f *files) path(id string) string { return filepath.Join(f.dir, id+f.ext) }

func (f *files) checkDir() error {
	fi, err := os.Lstat(f.dir)
	if err != nil {
		return unavailable(storeDirUnavailable, "cannot use the store directory", err)
	}
	if !fi.IsDir() {
		return fail(ErrInsecurePermissions, "the store directory is not a directory", nil)
	}
	return checkPerm(fi)
}

// sweepTemps removes temporary files abandoned by crashed writers.
func (f *files) sweepTemps() {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) || !strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
			os.Remove(filepath.Join(f.dir, e.Name()))
		}
	}
}

// readRaw returns the file of id as stored (ErrNotFound when absent).
func (f *files) readRaw(ctx context.Context, id string) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx, "")
	}
	if err := f.checkDir(); err != nil {
		return nil, err
	}
	p := f.path(id)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail(ErrNotFound, "", nil)
	}
	if err != nil {
		return nil, unavailable(storeDirUnavailable, "cannot read the token file", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fail(ErrInsecurePermissions, "the token file is not a regular file", nil)
	}
	if err := checkPerm(fi); err != nil {
		return nil, err
	}
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail(ErrNotFound, "", nil)
	}
	if err != nil {
		return nil, unavailable(storeDirUnavailable, "cannot read the token file", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, unavailable(storeDirUnavailable, "cannot read the token file", err)
	}
	if int64(len(data)) > maxFileSize {
		return nil, fail(ErrCorrupt, "token file too large", nil)
	}
	return data, nil
}

func (f *files) get(ctx context.Context, id string) ([]byte, error) {
	raw, err := f.readRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	if f.seal == nil {
		return raw, nil
	}
	return f.seal.open(id, raw)
}

func (f *files) put(ctx context.Context, id string, data []byte, _ string) error {
	out := data
	if f.seal != nil {
		prev, err := f.readRaw(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			return err
		}
		if out, err = f.seal.seal(id, data, prev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	if err := f.checkDir(); err != nil {
		return err
	}
	if err := writeAtomic(f.dir, filepath.Base(f.path(id)), out, !f.noSync, f.crash); err != nil {
		return unavailable(storeDirUnavailable, "cannot write the token file", err)
	}
	// Read back and compare: a write that reported success but did not
	// land (a full disk on close, a file system that lies) must fail the
	// Save now, not the Load after the old refresh token was discarded.
	back, err := f.readRaw(ctx, id)
	if err != nil {
		return fail(ErrWriteVerify, "cannot read the token file back", err)
	}
	if sha256.Sum256(back) != sha256.Sum256(out) {
		return fail(ErrWriteVerify, "token file read back differs", nil)
	}
	return nil
}

func (f *files) del(ctx context.Context, id string) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	err := os.Remove(f.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return unavailable(storeDirUnavailable, "cannot remove the token file", err)
	}
	if f.noSync {
		return nil
	}
	if err := syncDir(f.dir); err != nil {
		return unavailable(storeDirUnavailable, "cannot sync the store directory", err)
	}
	return nil
}

// errCrashed is what writeAtomic returns where a test's crash seam stopped
// it.
var errCrashed = errors.New("store: simulated crash")

// writeAtomic replaces dir/name with data: a 0600 temporary file in dir,
// written and fsynced, renamed over name, and the directory fsynced. A
// crash leaves the old file or the new one, plus at most a temporary file.
// crash, nil outside tests, stops the write at a named step, leaving what
// a process killed there would leave.
func writeAtomic(dir, name string, data []byte, durable bool, crash func(step string) bool) (err error) {
	died := func(step string) bool { return crash != nil && crash(step) }
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*"+tmpSuffix)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && err != errCrashed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if died("created") {
		tmp.Close() // the OS closes a dead process's files
		return errCrashed
	}
	if err = tmp.Chmod(0o600); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if died("half-written") {
		_, err = tmp.Write(data[:len(data)/2])
		tmp.Close()
		if err != nil {
			return err
		}
		return errCrashed
	}
	if _, err = io.Copy(tmp, bytes.NewReader(data)); err != nil {
		return err
	}
	if died("written") {
		tmp.Close()
		return errCrashed
	}
	if durable {
		if err = tmp.Sync(); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if died("closed") {
		return errCrashed
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	if died("renamed") {
		return errCrashed
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}
