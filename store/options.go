package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Mode is a storage mode.
type Mode string

// The storage modes. Only ModeKeychain is used unless the application or
// the user opts in to another: storage is never downgraded behind the
// user's back, and the insecure mode is never a default.
const (
	// ModeKeychain keeps entries in the OS keychain: the Secret Service
	// (gnome-keyring, KWallet, KeePassXC) on Linux, the login keychain on
	// macOS, Credential Manager on Windows. It is the default.
	ModeKeychain Mode = "keychain"
	// ModeEncryptedFile keeps entries in AES-256-GCM encrypted files whose
	// key is derived from a passphrase, for headless machines.
	ModeEncryptedFile Mode = "encrypted-file"
	// ModeMemory keeps entries in process memory only.
	ModeMemory Mode = "memory"
	// ModePlaintextFile keeps entries unencrypted in 0600 files. It is used
	// only when asked for by name, and warns on every Open.
	ModePlaintextFile Mode = "plaintext-file"
)

// Environment variables Open reads when the corresponding option is unset.
const (
	// EnvMode selects the mode ("keychain", "encrypted-file", "memory",
	// "plaintext-file") when Options.Mode is empty.
	EnvMode = "TOKENWARD_STORE"
	// EnvPassphrase holds the passphrase of ModeEncryptedFile when
	// Options.Passphrase is empty.
	EnvPassphrase = "TOKENWARD_PASSPHRASE"
)

// ParseMode returns the mode named s, or an error matching ErrInvalidConfig.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeKeychain, ModeEncryptedFile, ModeMemory, ModePlaintextFile:
		return m, nil
	}
	return "", fail(ErrInvalidConfig, fmt.Sprintf("unknown mode %q; valid modes: keychain, encrypted-file, memory, plaintext-file", s), nil)
}

// Options configures Open. The zero value opens the OS keychain, unless the
// TOKENWARD_STORE environment variable names another mode.
type Options struct {
	// Mode is the storage mode. Optional: defaults to $TOKENWARD_STORE, and
	// to ModeKeychain when that is unset. There is no automatic fallback.
	Mode Mode

	// Service is the keychain service name under which every item is
	// filed. Optional: defaults to "tokenward". 1-64 characters of
	// [A-Za-z0-9._-].
	Service string

	// Backend replaces the OS keychain in ModeKeychain (tests, custom
	// keychains). Optional: defaults to the OS keychain via
	// github.com/zalando/go-keyring. It must be safe for concurrent use.
	Backend Backend

	// Dir is the directory of the file modes. Optional: defaults to
	// os.UserConfigDir()/tokenward. It is created 0700.
	Dir string

	// LockDir is the directory of the lock files. Optional: defaults to
	// os.UserCacheDir()/tokenward/locks; Open fails (ErrUnavailable) when
	// it is empty and there is no user cache directory (neither HOME nor
	// XDG_CACHE_HOME is set). It is created 0700 on first use. Processes
	// exclude each other's writes and Lock calls only when they use the
	// same lock directory: give every process that shares these tokens the
	// same one.
	LockDir string

	// Passphrase is the passphrase of ModeEncryptedFile. Optional: defaults
	// to $TOKENWARD_PASSPHRASE; that mode fails to open without one.
	Passphrase string

	// Timeout bounds every Load, Save and Delete that has no earlier
	// context deadline. Optional: defaults to 5 seconds.
	Timeout time.Duration

	// LockTimeout bounds how long Lock waits for a lock another process or
	// goroutine holds. Optional: defaults to 60 seconds.
	LockTimeout time.Duration

	// Logger receives debug events and the plaintext-file warning. It never
	// receives a secret. Optional: defaults to discarding everything.
	Logger *slog.Logger

	// Test seams.
	getenv    func(string) string // defaults to os.Getenv
	kdfLogN   uint8               // scrypt cost for new files; defaults to 15
	chunkSize int                 // raw bytes per keychain chunk
	inlineMax int                 // largest entry kept inside the manifest item
	noSync    bool                // skip fsync in the file modes (tests on slow disks)
	crashAt   func(string) bool   // test seam: see files.crash
	// probeTimeout bounds Open's availability probe; defaults to
	// probeTimeout. Tests that are not about that deadline make it
	// generous, so that a starved machine cannot turn their answer into
	// ErrTimeout.
	probeTimeout time.Duration
}

// Defaults.
const (
	defaultService     = "tokenward"
	defaultTimeout     = 5 * time.Second
	defaultLockTimeout = 60 * time.Second
	defaultKDFLogN     = 15
)

var serviceRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// resolve fills in defaults and validates o. It reads the environment but
// touches nothing on disk.
func (o *Options) resolve() error {
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	if o.Mode == "" {
		if env := o.getenv(EnvMode); env != "" {
			m, err := ParseMode(env)
			if err != nil {
				return fail(ErrInvalidConfig, fmt.Sprintf("%s=%q is not a mode; valid modes: keychain, encrypted-file, memory, plaintext-file", EnvMode, env), nil)
			}
			o.Mode = m
		} else {
			o.Mode = ModeKeychain
		}
	} else if _, err := ParseMode(string(o.Mode)); err != nil {
		return err
	}
	if o.Service == "" {
		o.Service = defaultService
	}
	if !serviceRE.MatchString(o.Service) {
		return fail(ErrInvalidConfig, "Service must be 1-64 characters of [A-Za-z0-9._-]", nil)
	}
	if o.Timeout < 0 || o.LockTimeout < 0 {
		return fail(ErrInvalidConfig, "negative timeout", nil)
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.kdfLogN == 0 {
		o.kdfLogN = defaultKDFLogN
	}
	if o.chunkSize <= 0 {
		o.chunkSize = defaultChunkSize
	}
	if o.inlineMax <= 0 {
		o.inlineMax = defaultInlineMax
	}
	if o.probeTimeout <= 0 {
		o.probeTimeout = probeTimeout
	}
	if o.Mode == ModeEncryptedFile && o.Passphrase == "" {
		o.Passphrase = o.getenv(EnvPassphrase)
		if o.Passphrase == "" {
			return fail(ErrInvalidConfig, "encrypted-file mode needs a passphrase: set "+EnvPassphrase+" or Options.Passphrase", nil)
		}
	}
	return nil
}

// dataDir returns the directory of the file modes.
func (o *Options) dataDir() (string, error) {
	if o.Dir != "" {
		return filepath.Abs(o.Dir)
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", unavailable(storeDirUnavailable, "no user config directory", err)
	}
	return filepath.Join(d, "tokenward"), nil
}

// lockDir returns the directory of the lock files.
func (o *Options) lockDir() (string, error) {
	if o.LockDir != "" {
		return filepath.Abs(o.LockDir)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", unavailable(lockDirUnavailable, "no user cache directory", err)
	}
	return filepath.Join(d, "tokenward", "locks"), nil
}
