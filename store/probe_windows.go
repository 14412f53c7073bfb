//go:build windows

package store

import "context"

// probeOS: Credential Manager is part of every Windows logon session; a
// session without one reports ERROR_NO_SUCH_LOGON_SESSION on first use
// (ErrUnavailable).
func probeOS(ctx context.Context) error { return nil }

func osBackendName() string { return "Windows Credential Manager" }

// explainLocked returns err as it is: only the Secret Service can have no
// keyring at all, which a locked-looking failure there may mean.
func explainLocked(err error) error { return err }
