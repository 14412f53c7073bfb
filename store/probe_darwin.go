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
