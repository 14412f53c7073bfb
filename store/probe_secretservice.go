//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package store

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	dbus "github.com/godbus/dbus/v5"
)

const secretsName = "org.freedesktop.secrets"

// secretServiceImpl remembers what implements the Secret Service, for Status.
var secretServiceImpl struct {
	mu   sync.Mutex
	name string
}

// probeOS connects to the session bus named by DBUS_SESSION_BUS_ADDRESS
// only: an unset variable means no session bus, because godbus would then
// run dbus-launch (autolaunch). gnome-keyring is D-Bus activatable, so the
// Secret Service counts as present when its name has an owner or is
// activatable.
func probeOS(ctx context.Context) error {
	return probeBus(ctx, os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
}

// probeBus looks for the Secret Service on the bus at addr and, when it is
// running, checks that the collection go-keyring uses is unlocked. An
// activatable service is not started (that would be a side effect), so
// its lock state shows on first use.
func probeBus(ctx context.Context, addr string) error {
	if addr == "" || strings.HasPrefix(addr, "autolaunch:") {
		return fail(ErrUnavailable, "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set (tokenward does not autolaunch one)", nil)
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return busFailure(ctx, "cannot connect to the D-Bus session bus", err)
	}
	defer conn.Close()
	bus := conn.BusObject()
	var has bool
	if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, secretsName).Store(&has); err != nil {
		return busFailure(ctx, "the session bus did not answer NameHasOwner", err)
	}
	if !has {
		var names []string
		if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.ListActivatableNames", 0).Store(&names); err != nil {
			return busFailure(ctx, "the session bus did not answer ListActivatableNames", err)
		}
		if !slices.Contains(names, secretsName) {
			return fail(ErrUnavailable, "no Secret Service (org.freedesktop.secrets) on the session bus; install and start gnome-keyring, KWallet or KeePassXC", nil)
		}
		return nil
	}
	var pid uint32
	if bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, secretsName).Store(&pid) == nil {
		if comm, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm"); err == nil {
			secretServiceImpl.mu.Lock()
			secretServiceImpl.name = implName(strings.TrimSpace(string(comm)))
			secretServiceImpl.mu.Unlock()
		}
	}
	return checkCollection(ctx, conn)
}

// busFailure types a failed probe step: a timeout when the probe's
// deadline passed (a bus that accepts connections and never answers), and
// otherwise ErrUnavailable.
func busFailure(ctx context.Context, detail string, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, detail)
	}
	return fail(ErrUnavailable, detail, err)
}

// Object paths of the Secret Service, as go-keyring v0.2.8 uses them.
const (
	secretsPath     = dbus.ObjectPath("/org/freedesktop/secrets")
	loginCollection = dbus.ObjectPath("/org/freedesktop/secrets/collection/login")
	defaultAlias    = dbus.ObjectPath("/org/freedesktop/secrets/aliases/default")
)

// Summaries of the probe's ErrLocked errors. They say what a person must
// do (unlock the keyring, or create one: with no keyring there is nothing
// to unlock) and name the opt-ins, like ErrUnavailable's message: the
// probe runs where a program decides where its tokens go.
const (
	lockedCollection = "the Secret Service keyring is locked, and unlocking it needs a person to type its password " +
		"(Linux: unlock the login keyring in Seahorse or by signing in graphically, then retry); " +
		"tokenward does not show the unlock prompt at startup; " + optIns
	noCollection = "the Secret Service has no keyring yet (no \"login\" collection and no \"default\" alias), so there is " +
		"nothing to unlock: a person must create one and choose its password, then retry " +
		"(in a desktop session: sign in graphically, or create a keyring in Seahorse (\"Passwords and Keys\") or your " +
		"desktop's keyring manager, and make it the default; without a desktop, in the program's D-Bus session, " +
		"(re)start gnome-keyring with the new keyring's password on its input, which creates and unlocks the login keyring: " +
		createKeyringCommand + "); " + optIns

	// createKeyringCommand (re)starts gnome-keyring in the current D-Bus
	// session with the password in $PASSWORD, creating and unlocking the
	// login keyring. --replace because the keychain call that found no
	// keyring may have started a daemon already, and a second --unlock
	// does not create a keyring in a running one.
	createKeyringCommand = `printf '%s' "$PASSWORD" | gnome-keyring-daemon --replace --unlock --components=secrets`
)

// keyringCollection returns the collection go-keyring stores items in: the
// "login" collection when the service lists it, else the "default" alias
// (go-keyring's GetLoginCollection, which also falls back to the alias
// when the list cannot be read).
func keyringCollection(ctx context.Context, conn *dbus.Conn) dbus.ObjectPath {
	var v dbus.Variant
	err := conn.Object(secretsName, secretsPath).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0,
		"org.freedesktop.Secret.Service", "Collections").Store(&v)
	if paths, ok := v.Value().([]dbus.ObjectPath); err == nil && ok && slices.Contains(paths, loginCollection) {
		return loginCollection
	}
	return defaultAlias
}

// checkCollection reports a locked or missing collection as ErrLocked. It
// only reads the collection's Locked property: go-keyring's own check
// (Service.Unlock) shows an unlock prompt, or, with no prompter, fails the
// first read instead of Open. A service that does not answer the property
// read in a known way is accepted: the first real call will tell.
func checkCollection(ctx context.Context, conn *dbus.Conn) error {
	path := keyringCollection(ctx, conn)
	var v dbus.Variant
	err := conn.Object(secretsName, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0,
		"org.freedesktop.Secret.Collection", "Locked").Store(&v)
	switch {
	case ctx.Err() != nil:
		return ctxError(ctx, "the Secret Service did not say whether its keyring is locked")
	case isNoSuchObject(err):
		return noKeyring(path, err)
	case err != nil:
		return nil
	}
	if locked, ok := v.Value().(bool); ok && locked {
		return &opError{kind: ErrLocked, summary: lockedCollection, detail: string(path) + " is locked"}
	}
	return nil
}

// noKeyring is the ErrLocked error of a Secret Service without any
// keyring: path, the collection go-keyring would use, does not exist.
func noKeyring(path dbus.ObjectPath, cause error) error {
	return &opError{kind: ErrLocked, summary: noCollection, detail: string(path) + " does not exist", cause: cause}
}

// explainLocked returns err, the failure of a go-keyring call, as it is
// unless it reads as a locked keychain and the Secret Service has no
// keyring at all: then it returns noKeyring's error, with err as its
// cause. Finding no collection, go-keyring asks to unlock the "default"
// alias, and the failure of that looks like a locked keyring, whose advice
// (unlock it) nobody can follow. This happens where Open's probe could not
// look: a Secret Service that was only D-Bus activatable then, started by
// this very call (a headless machine with gnome-keyring installed). The
// look reads one property and shows no prompt.
func explainLocked(err error) error {
	if err == nil || classify(err) != ErrLocked {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return explainLockedOn(ctx, os.Getenv("DBUS_SESSION_BUS_ADDRESS"), err)
}

// explainLockedOn is explainLocked on the bus at addr.
func explainLockedOn(ctx context.Context, addr string, err error) error {
	if addr == "" || strings.HasPrefix(addr, "autolaunch:") {
		return err
	}
	conn, cerr := dbus.Connect(addr, dbus.WithContext(ctx))
	if cerr != nil {
		return err
	}
	defer conn.Close()
	var oe *opError
	if errors.As(checkCollection(ctx, conn), &oe) && oe.summary == noCollection {
		return noKeyring(dbus.ObjectPath(strings.TrimSuffix(oe.detail, " does not exist")), err)
	}
	return err
}

// implName maps a process name to the product.
func implName(comm string) string {
	switch {
	case strings.HasPrefix(comm, "gnome-keyring"):
		return "gnome-keyring"
	case strings.HasPrefix(comm, "kwalletd"), strings.HasPrefix(comm, "ksecretd"):
		return "KWallet"
	case strings.HasPrefix(strings.ToLower(comm), "keepassxc"):
		return "KeePassXC"
	}
	return ""
}

func osBackendName() string {
	secretServiceImpl.mu.Lock()
	defer secretServiceImpl.mu.Unlock()
	if secretServiceImpl.name != "" {
		return secretServiceImpl.name + " via Secret Service"
	}
	return "Secret Service (D-Bus org.freedesktop.secrets)"
}
