package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"

	dbus "github.com/godbus/dbus/v5"
	"github.com/zalando/go-keyring"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/twerr"
)

// sentinel is the type of the package's sentinel errors. Its message is a
// diagnosis plus a remediation hint and never holds a secret.
type sentinel struct {
	msg    string
	parent error // also matched by errors.Is, may be nil
}

func (e *sentinel) Error() string { return "store: " + e.msg }
func (e *sentinel) Unwrap() error { return e.parent }

// optIns names the storage modes a user can choose instead of the keychain.
const optIns = "to keep tokens elsewhere, opt in explicitly: TOKENWARD_STORE=encrypted-file with " +
	"TOKENWARD_PASSPHRASE (encrypted file), TOKENWARD_STORE=memory (nothing persisted) or " +
	"TOKENWARD_STORE=plaintext-file (unencrypted file), or set Options.Mode"

// The sentinel errors. Every error the package returns matches exactly one
// of them (or context.Canceled) with errors.Is; the message of the returned
// error adds which operation failed and why.
var (
	// ErrNotFound reports that no entry is stored under the name. It also
	// matches keyring.ErrNotFound of github.com/zalando/go-keyring.
	ErrNotFound error = &sentinel{msg: "no entry stored under this name (sign in to create one)", parent: keyring.ErrNotFound}

	// ErrUnavailable reports that the storage cannot be used at all: no
	// keychain (no D-Bus session bus or Secret Service, unsupported OS), no
	// usable lock directory, or a file mode whose directory cannot be used.
	// The default mode never falls back to another mode; when the keychain
	// is the problem the message names the opt-ins, and when a directory is
	// it names the directory option instead.
	ErrUnavailable error = &sentinel{msg: "OS keychain unavailable; " + optIns}

	// ErrLocked reports a locked keychain, or one that needs user interaction
	// the process cannot provide (SSH, launchd, CI).
	ErrLocked error = &sentinel{msg: "keychain is locked or needs user interaction; unlock it and retry " +
		"(Linux: unlock the login keyring, e.g. in Seahorse or by signing in graphically; " +
		"macOS: security unlock-keychain; over SSH the login keychain is usually locked)"}

	// ErrTooLarge reports an entry larger than MaxEntrySize, or a value the
	// backend refused as too big.
	ErrTooLarge error = &sentinel{msg: "entry too large to store (the limit is 256 KiB); drop unneeded fields such as the id_token"}

	// ErrTimeout reports a backend or lock that did not answer before the
	// deadline. It is never a reason to change storage mode: a slow or
	// prompting keychain is still the right place for the tokens.
	ErrTimeout error = &sentinel{msg: "timed out; the keychain may be waiting for an unlock prompt: unlock it " +
		"and retry, or raise Options.Timeout / Options.LockTimeout"}

	// ErrInvalidKey reports an entry name that cannot be stored: empty, not
	// valid UTF-8, or longer than 4096 bytes. Names are never renamed.
	ErrInvalidKey error = &sentinel{msg: "invalid entry name: it must be non-empty UTF-8 of at most 4096 bytes (use Key.String)"}

	// ErrCorrupt reports stored data that cannot be read back whole: garbled,
	// truncated, failing its checksum or authentication tag (which is also
	// what a wrong passphrase looks like), or stored under another name.
	// Nothing of it is returned.
	ErrCorrupt error = &sentinel{msg: "stored entry is corrupt, unreadable with this passphrase, or belongs to another name; " +
		"check TOKENWARD_PASSPHRASE, or delete the entry and sign in again"}

	// ErrUnsupportedVersion reports an entry written by a newer version of
	// tokenward. It also matches ErrCorrupt.
	ErrUnsupportedVersion error = &sentinel{msg: "stored entry was written by a newer tokenward (unknown schema version); upgrade, or delete it and sign in again", parent: ErrCorrupt}

	// ErrInsecurePermissions reports a token file or directory that group or
	// others can access, or that is not a regular file / directory.
	ErrInsecurePermissions error = &sentinel{msg: "token file or directory is accessible by group or others; " +
		"run chmod 600 on the files and chmod 700 on the directory"}

	// ErrWriteVerify reports a write the backend accepted but that read back
	// different (macOS can report success for a write it dropped). The
	// previous entry is still in place.
	ErrWriteVerify error = &sentinel{msg: "the backend accepted a write but reading it back gave different data; " +
		"the previous entry is kept; check that the keychain is unlocked and retry"}

	// ErrInvalidEntry reports an Entry that cannot be stored faithfully: a
	// string that is not valid UTF-8 or a time outside the years 1-9999.
	ErrInvalidEntry error = &sentinel{msg: "entry cannot be stored faithfully (a string is not valid UTF-8 or a time is outside years 1-9999)"}

	// ErrInvalidConfig reports an unusable Options value or environment
	// variable (unknown mode, missing passphrase, bad service name). It is
	// the same value as client.ErrInvalidConfig, transport.ErrInvalidConfig
	// and refresh.ErrInvalidConfig.
	ErrInvalidConfig = twerr.ErrInvalidConfig
)

// invalidConfigText is the message of an ErrInvalidConfig error.
const invalidConfigText = "invalid store configuration; check Options (Mode, Service, Passphrase, timeouts) and the TOKENWARD_STORE / TOKENWARD_PASSPHRASE variables"

// opError is the error the package returns: the sentinel kind, the
// operation, a safe detail and the underlying cause (for errors.As) whose
// text has been scrubbed of secrets.
type opError struct {
	op      string // "load", "save", "delete", "lock", "open"; set by withOp
	kind    error  // a sentinel, or context.Canceled
	summary string // replaces the sentinel's message when set (see unavailable)
	detail  string // safe text
	cause   error
	text    string // scrubbed cause text
	// changing marks a keychain read that failed because other processes
	// were rewriting or deleting the entry while it was read (an item gone
	// between its lookup and its read, chunks of a generation already
	// replaced), not because anything is wrong: reading again while holding
	// the entry's write lock gives a consistent answer.
	changing bool
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("store: ")
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	if e.summary != "" {
		b.WriteString(e.summary)
	} else if s, ok := e.kind.(*sentinel); ok {
		b.WriteString(s.msg)
	} else if e.kind == ErrInvalidConfig {
		b.WriteString(invalidConfigText)
	} else {
		b.WriteString(e.kind.Error())
	}
	if e.detail != "" {
		b.WriteString(" (")
		b.WriteString(e.detail)
		b.WriteString(")")
	}
	if e.text != "" {
		b.WriteString(": ")
		b.WriteString(e.text)
	}
	return b.String()
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// fail returns an error of the given kind. Only a safe rendering of the
// cause's text is kept (see causeText); withOp finishes the scrubbing.
func fail(kind error, detail string, cause error) error {
	e := &opError{kind: kind, detail: detail, cause: cause}
	if cause != nil && kind != ErrNotFound { // "not found" needs no backend text
		e.text = causeText(cause)
	}
	return e
}

// markChanging marks err (an *opError) as caused by concurrent writers.
func markChanging(err error) error {
	var oe *opError
	if !errors.As(err, &oe) {
		return err
	}
	cp := *oe
	cp.changing = true
	return &cp
}

// isChanging reports whether err is a read that concurrent writers spoiled.
func isChanging(err error) bool {
	var oe *opError
	return errors.As(err, &oe) && oe.changing
}

// Summaries of ErrUnavailable errors that have nothing to do with the OS
// keychain. ErrUnavailable's own message says the keychain is unavailable
// and names the other storage modes; for a missing lock or store directory
// that would nudge users to downgrade their token storage to fix a
// directory problem.
const (
	lockDirUnavailable = "lock directory unavailable: the keychain and file modes need a directory for " +
		"their lock files; set Options.LockDir (default: the user cache directory, from XDG_CACHE_HOME or HOME) " +
		"to a writable directory shared by every process that uses these tokens"
	storeDirUnavailable = "token store directory or file unavailable; check Options.Dir (default: the user " +
		"config directory) and its permissions"
	noRandomness = "the system's random number generator failed"
)

// unavailable returns an ErrUnavailable error whose message is summary
// instead of ErrUnavailable's keychain wording.
func unavailable(summary, detail string, cause error) error {
	e := fail(ErrUnavailable, detail, cause).(*opError)
	e.summary = summary
	return e
}

// maxErrorText bounds the detail and cause text of an error.
const maxErrorText = 300

// withOp names the operation on err, removes the given secrets from its
// text and bounds its length. Errors not yet classified are classified.
func withOp(op string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if !errors.As(err, &oe) {
		return withOp(op, fail(classify(err), "", err), secrets...)
	}
	cp := *oe
	if cp.op == "" {
		cp.op = op
	}
	cp.detail = redact.Scrub(cp.detail, maxErrorText, secrets...)
	cp.text = redact.Scrub(cp.text, maxErrorText, secrets...)
	return &cp
}

// longWord matches runs that look like tokens or encoded data.
var longWord = regexp.MustCompile(`[^\s'"(),;]{20,}`)

// causeText renders a backend's error without anything secret: backend
// messages are foreign text (macOS security echoes its input, secret
// included, in its error messages). Known types are rendered from their
// codes; other text keeps short words and absolute paths, and loses every
// long run of characters (tokens, base64), before redact removes anything
// else it recognises.
func causeText(err error) string {
	var de dbus.Error
	var dep *dbus.Error
	var ec interface{ ExitCode() int }
	switch {
	case errors.As(err, &de):
		return "D-Bus error " + de.Name
	case errors.As(err, &dep) && dep != nil:
		return "D-Bus error " + dep.Name
	case errors.As(err, &ec):
		return fmt.Sprintf("exit status %d", ec.ExitCode())
	}
	if errno, ok := err.(syscall.Errno); ok {
		return errno.Error()
	}
	text := longWord.ReplaceAllStringFunc(err.Error(), func(w string) string {
		if strings.HasPrefix(w, "/") {
			return w
		}
		return redact.Placeholder
	})
	return redact.String(text)
}

// ctxError turns the end of ctx into the package's error: ErrTimeout (which
// also matches context.DeadlineExceeded) or context.Canceled.
func ctxError(ctx context.Context, detail string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fail(context.Canceled, detail, nil)
	}
	return &opError{kind: ErrTimeout, detail: detail, cause: context.DeadlineExceeded}
}

// dbusName returns the name of the D-Bus error in err's chain, or "".
func dbusName(err error) string {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &de):
		return de.Name
	case errors.As(err, &dep) && dep != nil:
		return dep.Name
	}
	return ""
}

// isNoSuchObject reports whether err is a D-Bus error saying that the
// object a call was addressed to does not exist. gnome-keyring (through
// GDBus) answers org.freedesktop.DBus.Error.UnknownMethod with "No such
// interface ... on object at path ..." or "Object does not exist at path
// ..."; newer GDBus and godbus-based services say UnknownObject or
// UnknownInterface, and the Secret Service specification has NoSuchObject.
func isNoSuchObject(err error) bool {
	switch dbusName(err) {
	case "org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownObject",
		"org.freedesktop.DBus.Error.UnknownInterface", "org.freedesktop.Secret.Error.NoSuchObject":
		return true
	}
	return false
}

// kinds lists the sentinels in the order classify tries them.
var kinds = []error{ErrNotFound, ErrUnsupportedVersion, ErrCorrupt, ErrUnavailable, ErrLocked, ErrTooLarge,
	ErrTimeout, ErrInvalidKey, ErrInsecurePermissions, ErrWriteVerify, ErrInvalidEntry, ErrInvalidConfig}

// classify maps an error from a backend (go-keyring on every OS, godbus,
// /usr/bin/security exit statuses, Windows errnos) or from the file system
// to one of the sentinels, so that callers never have to know which
// keychain or which library failed.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, keyring.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return ErrTooLarge
	case errors.Is(err, keyring.ErrUnsupportedPlatform), errors.Is(err, exec.ErrNotFound):
		return ErrUnavailable
	}
	if name := dbusName(err); name != "" {
		switch {
		case name == "org.freedesktop.Secret.Error.IsLocked":
			return ErrLocked
		case name == "org.freedesktop.DBus.Error.NoReply", name == "org.freedesktop.DBus.Error.Timeout",
			name == "org.freedesktop.DBus.Error.TimedOut":
			return ErrTimeout
		default: // ServiceUnknown, NameHasNoOwner, Spawn.*, NoServer, Disconnected, AccessDenied, ...
			// An object that does not exist (isNoSuchObject) lands here
			// too: the keychain calls retry those first, so one that
			// persists means the Secret Service cannot be used.
			return ErrUnavailable
		}
	}
	// go-keyring's message when the login collection stays locked (the
	// unlock prompt was dismissed or no prompter is available).
	if strings.Contains(err.Error(), "failed to unlock correct collection") {
		return ErrLocked
	}
	// /usr/bin/security exit statuses (low byte of the OSStatus).
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		switch ec.ExitCode() {
		case 44: // errSecItemNotFound
			return ErrNotFound
		case 36, 51, 25, 128: // interaction not allowed, auth failed, no default keychain / user canceled
			return ErrLocked
		}
		return ErrUnavailable
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch uintptr(errno) {
		case 1168: // ERROR_NOT_FOUND (Windows)
			return ErrNotFound
		case 1783: // RPC_X_BAD_STUB_DATA: how CredWrite says a blob is too big
			return ErrTooLarge
		case 1312: // ERROR_NO_SUCH_LOGON_SESSION: no credential store in this session
			return ErrUnavailable
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	// Dial errors, "dbus: couldn't determine address of session bus",
	// closed connections and anything unknown: the keychain cannot be used.
	return ErrUnavailable
}
