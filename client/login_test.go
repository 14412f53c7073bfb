package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// A keychain that was locked after the Client opened it (a screen lock, a
// keyring locked by hand): Login fails with ErrLocked before it asks the
// server for a device code or opens a browser, so the user is never asked
// to approve a login whose tokens could not be kept.
func TestLoginChecksStoreFirst(t *testing.T) {
	t.Parallel()
	for _, device := range []bool{true, false} {
		name := "browser"
		if device {
			name = "device"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, oauthtest.Config{})
			kc := fakekeychain.NewSecretService()
			st, err := store.Open(t.Context(), func(o *store.Options) {
				o.Mode, o.Backend, o.LockDir = store.ModeKeychain, kc, t.TempDir()
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config()
			cfg.Store = st
			var prompted, opened atomic.Bool
			cfg.DevicePrompt = func(ctx context.Context, d DeviceCode) { prompted.Store(true); <-ctx.Done() }
			cfg.OpenBrowser = func(u string) error {
				opened.Store(true)
				go e.as.Browse(context.Background(), u)
				return nil
			}
			c := mustNew(t, cfg)
			kc.SetLocked(true)
			var opts []func(*LoginOptions)
			if device {
				opts = append(opts, WithDevice())
			}
			err = c.Login(t.Context(), opts...)
			if !errors.Is(err, store.ErrLocked) {
				t.Fatalf("Login with a locked keychain = %v, want store.ErrLocked", err)
			}
			st2 := e.as.Stats()
			if n := st2.Requests[oauthtest.EndpointDeviceAuthorization] + st2.Requests[oauthtest.EndpointAuthorize]; n != 0 || prompted.Load() || opened.Load() {
				t.Fatalf("a login was started with a locked keychain: %d requests, prompted %v, browser opened %v", n, prompted.Load(), opened.Load())
			}
			// Unlocked, the same Client logs in.
			kc.SetLocked(false)
			if err := c.Login(t.Context(), opts...); err != nil {
				t.Fatalf("Login after unlocking: %v", err)
			}
		})
	}
}
