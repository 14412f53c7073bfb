// Package fakekeychain provides thread-safe fake keychain backends that copy
// the behaviour of the OS keychains that github.com/zalando/go-keyring talks
// to, including their limits and their failure modes, so that store's tests
// can prove what the real keychains would do to a token: their size limits,
// name mangling, dropped writes, locks, hangs and missing buses.
//
// A [Fake] has the method set of go-keyring's Get/Set/Delete (service, user,
// secret strings) and returns the same errors go-keyring returns
// (keyring.ErrNotFound, keyring.ErrSetDataTooBig, exit-status errors, D-Bus
// errors), so the code under test sees exactly what it would see in
// production. Each model adds the quirks of one OS:
//
//   - [Windows]: a credential blob holds at most 2560 bytes, and the target
//     name is service + ":" + user, so ("a:b", "c") and ("a", "b:c") are the
//     same credential.
//   - [MacOS]: Set builds the exact line go-keyring pipes into
//     `/usr/bin/security -i` (base64 secret, POSIX single quoting); a line over
//     4096 bytes is refused with ErrSetDataTooBig, a line of exactly 4096
//     bytes is silently not stored yet Set returns nil (go-keyring#153),
//     and names are mangled the way security's own tokenizer does. Every
//     simulated child process is recorded with its argv, so tests can check
//     that no secret reaches one.
//   - [SecretService]: a locked collection (which Available reports, as the
//     store's probe of the real Secret Service does), a prompt that never
//     completes (calls hang until released), a missing session bus, and
//     go-keyring's two-step Get and Delete: a search for the item, then a
//     call on the object path it found, which fails the way gnome-keyring
//     fails it when another process deleted the item in between (see
//     [Fake.SetAfterSearch]).
//   - [Generic]: no limits.
//
// Every Fake also has hooks to count calls, fail calls, "crash" after the Nth
// write, and block calls until released.
package fakekeychain

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/zalando/go-keyring"
)

// Model selects which OS keychain a Fake imitates.
type Model int

// The models.
const (
	Generic Model = iota
	Windows
	MacOS
	SecretService
)

// String returns the model's name.
func (m Model) String() string {
	switch m {
	case Windows:
		return "fake Windows Credential Manager"
	case MacOS:
		return "fake macOS Keychain"
	case SecretService:
		return "fake Secret Service"
	default:
		return "fake keychain"
	}
}

// Limits of the real keychains, as go-keyring v0.2.8 enforces or meets them.
const (
	// WindowsMaxBlob is CRED_MAX_CREDENTIAL_BLOB_SIZE (5*512 bytes).
	WindowsMaxBlob = 2560
	// WindowsMaxService is go-keyring's limit on the service name.
	WindowsMaxService = 512
	// MacOSMaxLine is the size of security -i's line buffer, newline included.
	MacOSMaxLine = 4096
)

// Op names a backend operation.
type Op string

// The operations.
const (
	OpGet    Op = "get"
	OpSet    Op = "set"
	OpDelete Op = "delete"
)

// Call describes one backend call, as passed to a hook.
type Call struct {
	Op      Op
	Service string
	User    string
	Secret  string // only for OpSet
}

// Counts is the number of calls per operation.
type Counts struct {
	Get, Set, Delete int
}

// ErrCrashed is returned by every call after a crash injected with CrashAfter,
// until Recover is called.
var ErrCrashed = errors.New("fakekeychain: process crashed (injected)")

// ExitError stands for the *exec.ExitError go-keyring returns when
// /usr/bin/security fails: it has the same ExitCode method and message.
type ExitError struct{ Code int }

// Error returns "exit status N", like *exec.ExitError.
func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode returns the exit status.
func (e *ExitError) ExitCode() int { return e.Code }

// Exit codes of /usr/bin/security (the low byte of the OSStatus).
const (
	MacExitItemNotFound          = 44 // errSecItemNotFound (-25300)
	MacExitInteractionNotAllowed = 36 // errSecInteractionNotAllowed (-25308)
	MacExitAuthFailed            = 51 // errSecAuthFailed (-25293)
)

// ErrLockedCollection is what go-keyring returns when the login collection
// stays locked (the unlock prompt was dismissed or could not be shown).
var ErrLockedCollection = errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'")

// Fake is a fake keychain. It is safe for concurrent use. The zero value is
// not usable; call New.
type Fake struct {
	model Model

	mu      sync.Mutex // guards everything below
	items   map[string]string
	counts  Counts
	hook    func(Call) error
	crashAt int  // crash on the crashAt-th write from now; 0 = never
	lands   bool // whether the crashing write is applied before the crash
	writes  int  // writes since CrashAfter
	crashed bool
	block   chan struct{} // non-nil: calls wait until it is closed
	blocked int           // calls currently waiting on block
	locked  bool
	noBus   bool
	argv    [][]string
	// Secret Service object paths: each item gets a new number when it is
	// created (a replacing Set keeps it), as gnome-keyring numbers items.
	paths       map[string]uint64
	nextPath    uint64
	afterSearch func(Call)
}

// New returns an empty fake of the given model.
func New(m Model) *Fake {
	return &Fake{model: m, items: map[string]string{}, paths: map[string]uint64{}}
}

// NewWindows returns a fake Windows Credential Manager.
func NewWindows() *Fake { return New(Windows) }

// NewMacOS returns a fake macOS Keychain reached through /usr/bin/security.
func NewMacOS() *Fake { return New(MacOS) }

// NewSecretService returns a fake Secret Service (gnome-keyring, KWallet).
func NewSecretService() *Fake { return New(SecretService) }

// String describes the fake (store uses it in Status).
func (f *Fake) String() string { return f.model.String() }

// Model returns the fake's model.
func (f *Fake) Model() Model { return f.model }

// Get returns the secret stored for service and user.
func (f *Fake) Get(service, user string) (string, error) {
	c := Call{Op: OpGet, Service: service, User: user}
	if err := f.enter(c); err != nil {
		return "", err
	}
	if f.model == SecretService {
		return f.searchThenRead(c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return "", err
	}
	if f.model == MacOS {
		f.argv = append(f.argv, []string{"/usr/bin/security", "find-generic-password", "-s", service, "-wa", user})
	}
	v, ok := f.items[f.target(service, user)]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return v, nil
}

// Set stores secret for service and user, replacing any previous secret.
func (f *Fake) Set(service, user, secret string) error {
	c := Call{Op: OpSet, Service: service, User: user, Secret: secret}
	if err := f.enter(c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return err
	}
	apply := func() {}
	switch f.model {
	case Windows:
		if len(secret) > WindowsMaxBlob || len(service) >= WindowsMaxService {
			return keyring.ErrSetDataTooBig
		}
	case MacOS:
		line := MacOSCommand(service, user, secret)
		if len(line) > MacOSMaxLine {
			return keyring.ErrSetDataTooBig
		}
		f.argv = append(f.argv, []string{"/usr/bin/security", "-i"})
		if len(line) == MacOSMaxLine {
			// security -i reads 4095 bytes: the add is cut short and fails,
			// then the leftover newline runs as an empty command that
			// succeeds, so the exit status is 0 and nothing was stored.
			return f.crashPoint(apply)
		}
		svc, usr, err := macSplit(service, user)
		if err != nil {
			return err
		}
		service, user = svc, usr
	}
	key := f.target(service, user)
	apply = func() {
		f.items[key] = secret
		if _, ok := f.paths[key]; !ok {
			f.nextPath++
			f.paths[key] = f.nextPath
		}
	}
	return f.crashPoint(apply)
}

// Delete removes the secret stored for service and user.
func (f *Fake) Delete(service, user string) error {
	c := Call{Op: OpDelete, Service: service, User: user}
	if err := f.enter(c); err != nil {
		return err
	}
	if f.model == SecretService {
		return f.searchThenDelete(c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return err
	}
	if f.model == MacOS {
		f.argv = append(f.argv, []string{"/usr/bin/security", "delete-generic-password", "-s", service, "-a", user})
	}
	key := f.target(service, user)
	if _, ok := f.items[key]; !ok {
		return keyring.ErrNotFound
	}
	return f.crashPoint(func() { f.remove(key) })
}

// enter counts the call, runs the hook and waits while calls are blocked.
// It must be called without f.mu held.
func (f *Fake) enter(c Call) error {
	f.mu.Lock()
	switch c.Op {
	case OpGet:
		f.counts.Get++
	case OpSet:
		f.counts.Set++
	case OpDelete:
		f.counts.Delete++
	}
	hook, block := f.hook, f.block
	if block != nil {
		f.blocked++
	}
	f.mu.Unlock()
	if block != nil {
		<-block
		f.mu.Lock()
		f.blocked--
		f.mu.Unlock()
	}
	if hook != nil {
		return hook(c)
	}
	return nil
}

// stateErr returns the error the keychain's current state causes. f.mu is held.
func (f *Fake) stateErr(c Call) error {
	if f.crashed {
		return ErrCrashed
	}
	if f.noBus {
		return noBusError()
	}
	if f.locked {
		switch f.model {
		case MacOS:
			if c.Op == OpSet {
				// security -i reports the failure through its exit status.
				return &ExitError{Code: MacExitAuthFailed}
			}
			return &ExitError{Code: MacExitInteractionNotAllowed}
		case Windows:
			return syscall.Errno(1312) // ERROR_NO_SUCH_LOGON_SESSION
		default:
			return ErrLockedCollection
		}
	}
	return nil
}

// crashPoint applies a write unless a crash is due. f.mu is held.
func (f *Fake) crashPoint(apply func()) error {
	if f.crashAt > 0 {
		f.writes++
		if f.writes == f.crashAt {
			if f.lands {
				apply()
			}
			f.crashed = true
			return ErrCrashed
		}
	}
	apply()
	return nil
}

// target returns the map key under which the keychain files an item.
func (f *Fake) target(service, user string) string {
	if f.model == Windows {
		// Credential Manager has one target name per credential.
		return service + ":" + user
	}
	return service + "\x00" + user
}

// Clone returns a new fake of the same model holding a copy of f's items,
// with no counts, hooks, crash, block or lock state.
func (f *Fake) Clone() *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &Fake{model: f.model, items: maps.Clone(f.items), paths: maps.Clone(f.paths), nextPath: f.nextPath}
}

// SetHook installs a function called before every operation (after the
// call is counted and any block is released). A non-nil error fails the
// call with that error. nil removes the hook.
func (f *Fake) SetHook(h func(Call) error) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// CrashAfter makes the n-th write (Set or Delete) from now the last thing
// the "process" does: if lands is true the write is applied, otherwise not;
// either way it and every later call return ErrCrashed until Recover.
func (f *Fake) CrashAfter(n int, lands bool) {
	f.mu.Lock()
	f.crashAt, f.lands, f.writes, f.crashed = n, lands, 0, false
	f.mu.Unlock()
}

// Crashed reports whether an injected crash happened.
func (f *Fake) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

// Recover ends an injected crash: the keychain keeps what was written and
// answers calls again, as it would for a restarted process.
func (f *Fake) Recover() {
	f.mu.Lock()
	f.crashAt, f.writes, f.crashed = 0, 0, false
	f.mu.Unlock()
}

// Block makes every call from now on wait until release is called (a
// Secret Service unlock prompt that nobody answers). release is idempotent.
func (f *Fake) Block() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.block = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.block == ch {
				f.block = nil
			}
			f.mu.Unlock()
			close(ch)
		})
	}
}

// Blocked returns the number of calls currently waiting on Block.
func (f *Fake) Blocked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked
}

// SetLocked locks or unlocks the keychain (the login collection, the login
// keychain). While locked every call fails the way the OS reports it.
func (f *Fake) SetLocked(locked bool) {
	f.mu.Lock()
	f.locked = locked
	f.mu.Unlock()
}

// SetNoBus simulates a machine without a session bus (containers, SSH).
func (f *Fake) SetNoBus(noBus bool) {
	f.mu.Lock()
	f.noBus = noBus
	f.mu.Unlock()
}

// Counts returns the number of calls so far.
func (f *Fake) Counts() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts
}

// ResetCounts sets every count to zero.
func (f *Fake) ResetCounts() {
	f.mu.Lock()
	f.counts = Counts{}
	f.mu.Unlock()
}

// Items returns a copy of the stored items. Keys are "service:user" for the
// Windows model and "service\x00user" otherwise.
func (f *Fake) Items() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.items)
}

// Users returns the sorted user names of the stored items of service.
func (f *Fake) Users(service string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.items {
		sep := "\x00"
		if f.model == Windows {
			sep = ":"
		}
		if u, ok := strings.CutPrefix(k, service+sep); ok {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// Argv returns the argv of every child process the fake simulated
// (macOS: each go-keyring call runs /usr/bin/security).
func (f *Fake) Argv() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]string, len(f.argv))
	for i, a := range f.argv {
		out[i] = slices.Clone(a)
	}
	return out
}
