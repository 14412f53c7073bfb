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
// osGuard.
type osKeyring struct{}

func (osKeyring) Get(service, user string) (string, error) { return keyring.Get(service, user) }

func (osKeyring) Set(service, user, secret string) error { return keyring.Set(service, user, secret) }

func (osKeyring) Delete(service, user string) error { return keyring.Delete(service, user) }

// Available probes the OS keychain without side effects and without a
// prompt (see Available): ErrLocked for a locked Secret Service keyring.
func (osKeyring) Available(ctx context.Context) error { return probeOS(ctx) }
