package store

import (
	"context"
	"errors"
	"time"
)

// probeTimeout bounds the availability probe (K-07: answer within 1 s).
const probeTimeout = time.Second

// probeGuard runs the OS probe, so a probe that hangs leaks at most one
// goroutine and later probes fail fast.
var probeGuard = newGuard()

// Available reports whether the OS keychain can be reached, without
// starting anything and without writing anything: nil when it can, an
// error matching ErrUnavailable (or ErrTimeout) when it cannot. It returns
// within about a second.
//
// On Linux and the BSDs it connects to the session bus named by
// DBUS_SESSION_BUS_ADDRESS (never autolaunching one with dbus-launch, as
// godbus would when the variable is unset) and asks whether
// org.freedesktop.secrets has an owner or can be activated. On macOS it
// checks that /usr/bin/security exists; on Windows, Credential Manager is
// part of every session and is not probed. Other systems have no keychain.
func Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err := probeGuard.do(ctx, func() error { return probeOS(ctx) })
	if err == nil {
		return nil
	}
	var oe *opError
	switch k := classify(err); {
	case (k == ErrTimeout || k == ErrUnavailable) && errors.As(err, &oe):
		return withOp("available", err)
	case k == ErrTimeout:
		return withOp("available", fail(ErrTimeout, "", err))
	default:
		return withOp("available", fail(ErrUnavailable, "", err))
	}
}
