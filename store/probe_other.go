//go:build !((dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd || darwin || windows)

package store

import (
	"context"
	"runtime"
)

func probeOS(ctx context.Context) error {
	return fail(ErrUnavailable, "no supported OS keychain on "+runtime.GOOS, nil)
}

func osBackendName() string { return "none (" + runtime.GOOS + ")" }

// explainLocked returns err as it is: only the Secret Service can have no
// keyring at all, which a locked-looking failure there may mean.
func explainLocked(err error) error { return err }
