package store

import (
	"context"

	"github.com/zalando/go-keyring"
)

// osKeyring is the OS keychain through github.com/zalando/go-keyring. This
// file is the only code that calls go-keyring's package functions (and so
// its global provider, which a test could swap for the whole process):
// everything else sees a Backend. Its calls take no context and can block
// forever on an unanswered unlock prompt; the store runs them under
// osGuard. A failure of theirs that reads as a locked keychain goes
// through explainLocked: on the Secret Service it may mean that there is
// no keyring at all, which needs other advice than unlocking.
type osKeyring struct{}

// Get reads an item with go-keyring.
func (osKeyring) Get(service, user string) (string, error) {
	v, err := keyring.Get(service, user)
	return v, explainLocked(err)
}

// Set writes an item with go-keyring.
func (osKeyring) Set(service, user, secret string) error {
	return explainLocked(keyring.Set(service, user, secret))
}

// Delete removes an item with go-keyring.
func (osKeyring) Delete(service, user string) error {
	return explainLocked(keyring.Delete(service, user))
}

// Available probes the OS keychain without side effects and without a
// prompt (see Available): ErrLocked for a locked Secret Service keyring.
func (osKeyring) Available(ctx context.Context) error { return probeOS(ctx) }
