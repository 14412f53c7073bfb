package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store keeps entries under names. Every method is safe for concurrent use.
// All but Status take a context first and return by the context's deadline
// or the store's default one (Options.Timeout), whichever is earlier; Lock
// waits for a lock held elsewhere until Options.LockTimeout instead.
type Store interface {
	// Load returns the entry stored under name. The entry is the caller's
	// to modify. errors.Is(err, ErrNotFound) when nothing is stored.
	Load(ctx context.Context, name string) (*Entry, error)

	// Save stores e under name. It returns nil only after the stored entry
	// has been read back and found identical (a keychain can drop a write
	// it reported as done); when the stored entry already equals e it
	// writes nothing, so a refresh that changes nothing costs no keychain
	// write and no unlock prompt. A failed Save leaves the previous entry
	// or the new one, never a mix. Saves of one name are serialised within
	// the process and, in the keychain and file modes, across processes.
	Save(ctx context.Context, name string, e *Entry) error

	// Delete removes the entry stored under name. It returns nil if there
	// was none.
	Delete(ctx context.Context, name string) error

	// Lock takes the cross-process lock of name (an OS advisory lock on a
	// lock file; in-process for ModeMemory), waiting at most
	// Options.LockTimeout and until ctx ends. unlock releases it and is
	// idempotent. Two Lock calls exclude each other even in one process.
	// Lock does not block Save or Load: it is the caller's protocol
	// (lock, reload, refresh, save, unlock) that uses it.
	Lock(ctx context.Context, name string) (unlock func() error, err error)

	// Status describes where entries are kept.
	Status() Status

	// CheckWrite reports whether Save could store an entry right now,
	// without touching any stored entry, so that a caller can find out
	// before it asks a person to sign in whether the tokens of that login
	// could be kept. In the keychain mode it writes, reads back and deletes
	// a small item of its own under a name no entry uses (on a desktop
	// that may show the keychain's unlock prompt); the file modes create
	// and remove a temporary file in their directory; both then check the
	// lock directory the same way. ModeMemory returns nil (unless ctx has
	// ended, like every method). Its errors match the sentinels Save's
	// would (ErrLocked, ErrUnavailable, ErrTimeout, ErrInsecurePermissions,
	// ErrWriteVerify, ...).
	CheckWrite(ctx context.Context) error
}

// Status describes a store for status output. It holds no secret.
type Status struct {
	// Mode is the storage mode.
	Mode Mode
	// Backend names what holds the entries, such as "gnome-keyring via
	// Secret Service", "Windows Credential Manager" or "encrypted file".
	Backend string
	// Location says where: the keychain service name or the directory.
	Location string
	// Encrypted reports whether entries are encrypted at rest.
	Encrypted bool
	// Persistent reports whether entries outlive the process.
	Persistent bool
	// Warning is non-empty when the mode is insecure (plaintext-file).
	Warning string
}

// String returns a one-line description.
func (s Status) String() string {
	enc := "not encrypted"
	if s.Encrypted {
		enc = "encrypted"
	}
	out := fmt.Sprintf("%s: %s", s.Mode, s.Backend)
	if s.Location != "" {
		out += " (" + s.Location + ")"
	}
	out += ", " + enc
	if !s.Persistent {
		out += ", not persisted"
	}
	if s.Warning != "" {
		out += "; WARNING: " + s.Warning
	}
	return out
}

// blobs is what a mode implements: whole, verified byte blobs under item ids.
type blobs interface {
	// get returns the blob stored under id (ErrNotFound when absent).
	get(ctx context.Context, id string) ([]byte, error)
	// put stores data under id, atomically, and reads it back
	// (ErrWriteVerify). label is what a person sees for the stored item
	// where the storage shows one (the Secret Service); it holds no
	// secret, decides nothing, and modes without labels ignore it.
	put(ctx context.Context, id string, data []byte, label string) error
	// del removes the blob; nil when absent.
	del(ctx context.Context, id string) error
	// check writes and removes something of its own where blobs are
	// stored, touching no blob (see Store.CheckWrite).
	check(ctx context.Context) error
}

// store implements Store on top of one mode's blobs: names, the entry
// schema, deadlines, write serialisation, locks and logging.
type store struct {
	mode        Mode
	b           blobs
	status      Status
	timeout     time.Duration
	lockTimeout time.Duration
	lockDir     string // "" in memory mode: locks are in-process
	lockScope   string // names the storage in lock file names (see lockFile)
	log         *slog.Logger

	writers keyedMutex // serialises Save and Delete of one name in-process
	locks   keyedMutex // Lock in memory mode
}

// Open returns the store selected by Options.Mode, else by the
// TOKENWARD_STORE environment variable, else the OS keychain.
//
// In ModeKeychain it first checks that the keychain can be reached and is
// unlocked (see Available; at most about a second, and never showing an
// unlock prompt) and fails with an error matching ErrUnavailable, or
// ErrLocked for a locked Secret Service keyring, whose message names the
// opt-in alternatives, when it cannot. It never falls back to another
// mode, and it writes nothing to disk before a Save, Delete, Lock or
// CheckWrite (or a Load that raced writers of other processes and reads
// under the entry's write lock). Every mode but ModeMemory needs a lock
// directory (Options.LockDir, else os.UserCacheDir()/tokenward/locks);
// when none can be determined (neither HOME nor XDG_CACHE_HOME is set)
// Open fails with an error matching ErrUnavailable that says so and
// suggests no other mode.
// ModeEncryptedFile and ModePlaintextFile create their directory (0700)
// and refuse one that group or others can access. ModePlaintextFile logs a
// warning on every Open.
func Open(ctx context.Context, optFns ...func(*Options)) (Store, error) {
	var o Options
	for _, fn := range optFns {
		fn(&o)
	}
	if err := o.resolve(); err != nil {
		return nil, withOp("open", err)
	}
	s := &store{mode: o.Mode, timeout: o.Timeout, lockTimeout: o.LockTimeout, log: o.Logger}
	if o.Mode != ModeMemory {
		// Every Save and Delete needs a lock file: without a lock directory
		// (no HOME, no XDG_CACHE_HOME, no Options.LockDir) fail now, with
		// an error about the directory, rather than on every Save with one
		// that looks like a keychain problem.
		var err error
		if s.lockDir, err = o.lockDir(); err != nil {
			return nil, withOp("open", err)
		}
		s.lockScope = lockScope(&o)
	}
	switch o.Mode {
	case ModeKeychain:
		k, st, err := openKeychain(ctx, &o)
		if err != nil {
			return nil, withOp("open", err)
		}
		s.b, s.status = k, st
	case ModeMemory:
		s.b = newMemory()
		s.status = Status{Mode: ModeMemory, Backend: "process memory"}
	case ModeEncryptedFile, ModePlaintextFile:
		f, st, err := openFiles(&o)
		if err != nil {
			return nil, withOp("open", err, o.Passphrase)
		}
		s.b, s.status = f, st
		if o.Mode == ModePlaintextFile {
			s.log.Warn("store: plaintext-file mode: tokens are stored UNENCRYPTED; use the OS keychain or encrypted-file instead",
				slog.String("dir", st.Location))
		}
	}
	s.log.Debug("store: opened", slog.String("status", s.status.String()))
	return s, nil
}

// opContext applies the store's default deadline.
func (s *store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Load implements Store.
func (s *store) Load(ctx context.Context, name string) (*Entry, error) {
	id, err := checkName(name)
	if err != nil {
		return nil, withOp("load", err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	data, err := s.b.get(ctx, id)
	if isChanging(err) {
		// Other processes kept rewriting the entry while it was read. Every
		// writer holds the entry's write lock while it writes, so a read
		// under that lock sees the entry as one of them left it.
		data, err = s.getLocked(ctx, id)
	}
	if err == nil {
		var e *Entry
		if e, err = decodeEntry(name, data); err == nil {
			s.log.Debug("store: loaded", slog.String("item", id), slog.String("mode", string(s.mode)))
			return e, nil
		}
	}
	return nil, s.failed("load", id, err)
}

// Save implements Store.
func (s *store) Save(ctx context.Context, name string, e *Entry) error {
	id, err := checkName(name)
	if err != nil {
		return withOp("save", err)
	}
	secrets := entrySecrets(e)
	data, err := encodeEntry(name, e)
	if err != nil {
		return withOp("save", err, secrets...)
	}
	if len(data) > MaxEntrySize {
		return withOp("save", fail(ErrTooLarge, fmt.Sprintf("encoded entry is %d bytes", len(data)), nil))
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.writers.lock(ctx, id); err != nil {
		return withOp("save", err)
	}
	defer s.writers.unlock(id)

	// An unchanged entry is not rewritten (each write of a keychain item
	// may cost an unlock prompt). A corrupt one is replaced, and one that
	// other processes were rewriting is written under the lock below.
	cur, err := s.b.get(ctx, id)
	switch {
	case err == nil && bytes.Equal(cur, data):
		s.log.Debug("store: unchanged, not rewritten", slog.String("item", id))
		return nil
	case err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !isChanging(err):
		return s.failed("save", id, err, secrets...)
	}
	unlock, err := s.writeLock(ctx, id)
	if err != nil {
		return withOp("save", err)
	}
	defer unlock()
	if err := s.b.put(ctx, id, data, itemLabel(name)); err != nil {
		return s.failed("save", id, err, secrets...)
	}
	s.log.Debug("store: saved", slog.String("item", id), slog.Int("bytes", len(data)), slog.String("mode", string(s.mode)))
	return nil
}

// Delete implements Store.
func (s *store) Delete(ctx context.Context, name string) error {
	id, err := checkName(name)
	if err != nil {
		return withOp("delete", err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.writers.lock(ctx, id); err != nil {
		return withOp("delete", err)
	}
	defer s.writers.unlock(id)
	// Read first: nothing to delete needs no lock file, and a locked or
	// hung keychain fails before anything touches the disk.
	if _, err := s.b.get(ctx, id); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil && !errors.Is(err, ErrCorrupt) && !isChanging(err) {
		return s.failed("delete", id, err)
	}
	unlock, err := s.writeLock(ctx, id)
	if err != nil {
		return withOp("delete", err)
	}
	defer unlock()
	if err := s.b.del(ctx, id); err != nil {
		return s.failed("delete", id, err)
	}
	s.log.Debug("store: deleted", slog.String("item", id))
	return nil
}

// Status implements Store.
func (s *store) Status() Status { return s.status }

// SameBackend reports whether a and b are handles on one store: the same
// handle, or two that Open made for one persistent backend, so that what
// one saves the other loads and their writes and Locks exclude each other.
// That is: the same mode and Status, the same lock directory, and
//
//   - ModeEncryptedFile: the same directory and the same passphrase (a
//     handle with another passphrase cannot read the other's entries);
//   - ModePlaintextFile: the same directory;
//   - ModeKeychain: the same service name and the same Backend (the OS
//     keychain, or one Options.Backend value).
//
// The passphrases are compared inside this process, in constant time, and
// nothing derived from them is kept or shown: the answer tells only what
// the caller, who holds both handles, could find out by using them. Memory
// stores, and Stores that Open did not make, are the same only as
// themselves (and a Store value that == cannot compare as nothing).
func SameBackend(a, b Store) bool {
	if equalValues(a, b) {
		return true
	}
	sa, ok := a.(*store)
	sb, ok2 := b.(*store)
	if !ok || !ok2 || sa == nil || sb == nil {
		return false
	}
	if sa.mode != sb.mode || sa.status != sb.status || !sa.status.Persistent ||
		sa.lockDir != sb.lockDir || sa.lockScope != sb.lockScope {
		return false
	}
	switch x := sa.b.(type) {
	case *files:
		y, ok := sb.b.(*files)
		return ok && x.dir == y.dir && x.ext == y.ext && x.seal.samePassphrase(y.seal)
	case *keychain:
		y, ok := sb.b.(*keychain)
		return ok && x.service == y.service && equalValues(x.be, y.be)
	}
	return false
}

// equalValues reports whether a == b, and false where == would panic (two
// values of one type that cannot be compared).
func equalValues(a, b any) (eq bool) {
	defer func() {
		if recover() != nil {
			eq = false
		}
	}()
	return a != nil && a == b
}

// getLocked reads the blob of id while holding its write lock, which every
// writer of the entry holds while it writes (in every process that uses
// the same lock directory).
func (s *store) getLocked(ctx context.Context, id string) ([]byte, error) {
	unlock, err := s.writeLock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.b.get(ctx, id)
}

// failed finishes err (operation, scrubbing) and logs it at debug level.
func (s *store) failed(op, id string, err error, secrets ...string) error {
	err = withOp(op, err, secrets...)
	if !errors.Is(err, ErrNotFound) {
		s.log.Debug("store: "+op+" failed", slog.String("item", id), slog.String("error", err.Error()))
	}
	return err
}

// entrySecrets lists the values of e that must never appear in an error.
func entrySecrets(e *Entry) []string {
	if e == nil {
		return nil
	}
	out := []string{e.AccessToken, e.RefreshToken, e.IDToken}
	for _, v := range e.Extra {
		out = append(out, v)
	}
	if len(e.KeyPair) > 0 {
		out = append(out, string(e.KeyPair))
	}
	return out
}

// keyedMutex is a set of mutexes, one per key, whose Lock honours a context.
type keyedMutex struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters
}

// lock acquires the mutex of key or returns ctx's error.
func (k *keyedMutex) lock(ctx context.Context, key string) error {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		k.release(key, e)
		return ctxError(ctx, "waiting for another write of this entry in this process")
	}
}

// unlock releases the mutex of key.
func (k *keyedMutex) unlock(key string) {
	k.mu.Lock()
	e := k.m[key]
	k.mu.Unlock()
	<-e.ch
	k.release(key, e)
}

func (k *keyedMutex) release(key string, e *keyedEntry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}
