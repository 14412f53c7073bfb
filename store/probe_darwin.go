//go:build darwin

package store

import (
	"context"
	"os"
)

// probeOS checks that the program go-keyring runs exists. Whether the login
// keychain is unlocked shows on first use (ErrLocked).
func probeOS(ctx context.Context) error {
	if _, err := os.Stat("/usr/bin/security"); err != nil {
		return fail(ErrUnavailable, "/usr/bin/security not found", err)
	}
	return nil
}

func osBackendName() string { return "macOS Keychain (login keychain via /usr/bin/security)" }

// explainLocked returns err as it is: only the Secret Service can have no
// keyring at all, which a locked-looking failure there may mean.
func explainLocked(err error) error { return err }
