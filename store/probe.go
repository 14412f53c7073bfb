package store

import (
	"context"
	"time"
)

// probeTimeout bounds the availability probe: a program that checks for a
// keychain at startup must get its answer within about a second, even
// from a session bus that accepts connections and never answers.
const probeTimeout = time.Second

// probeGuard runs the OS probe, so a probe that hangs leaks at most one
// goroutine and later probes fail fast.
var probeGuard = newGuard()

// Available reports whether the OS keychain can be used, without starting
// anything, without writing anything and without showing an unlock
// prompt: nil when it can, an error matching ErrLocked when its keyring
// is locked (or there is none yet, which needs a person to create one),
// ErrUnavailable when there is no keychain, or ErrTimeout when it does not
// answer. It returns within about a second.
//
// On Linux and the BSDs it connects to the session bus named by
// DBUS_SESSION_BUS_ADDRESS (never autolaunching one with dbus-launch, as
// godbus would when the variable is unset) and asks whether
// org.freedesktop.secrets has an owner or can be activated. When the
// Secret Service is running it also reads the Locked property of the
// collection go-keyring stores items in (the "login" collection, else the
// "default" alias); reading a property never prompts. A service that is
// only activatable is not started, so its lock state shows on first use.
// On macOS it checks that /usr/bin/security exists; on Windows, Credential
// Manager is part of every session and is not probed. Other systems have
// no keychain.
func Available(ctx context.Context) error { return available(ctx, probeTimeout) }

// available is Available with the given deadline.
func available(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := guarded(ctx, probeGuard, func() (struct{}, error) { return struct{}{}, probeOS(ctx) })
	if err == nil {
		return nil
	}
	return withOp("available", probeError(err, "the keychain did not answer the availability probe"))
}
