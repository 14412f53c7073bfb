package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestCanary: canary secrets stored through every mode never appear in
// debug logs, in error strings (fmt.Sprintf("%+v", err)), in Status, or in
// the argv of the (simulated) security processes, including when the
// backend fails with messages that echo the secret, when the keychain is
// locked, times out or drops a write, and when a file is corrupt.
func TestCanary(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			log, logs := newLogger()
			e := newEnv(t, m, func(o *Options) { o.Logger = log })
			ctx := context.Background()
			ent := canaryEntry()
			big := sizedEntry(20 << 10)
			big.RefreshToken = ent.RefreshToken
			secrets := append(secretsOf(ent), big.AccessToken)
			var errs []error
			check := func(err error) {
				if err != nil {
					errs = append(errs, err)
				}
			}
			for _, n := range []string{"small", "big"} {
				en := ent
				if n == "big" {
					en = big
				}
				if err := e.Save(ctx, n, en); err != nil {
					t.Fatal(err)
				}
				got, err := e.reopen(t).Load(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				mustEqualEntry(t, got, en)
			}
			_, err := e.Load(ctx, "absent")
			check(err)
			check(e.Save(ctx, "", ent))
			check(e.Save(ctx, "bad", &Entry{AccessToken: ent.AccessToken, RefreshToken: "\xff" + ent.RefreshToken}))

			if e.fake != nil {
				// A backend whose error messages echo what it was given.
				e.fake.SetHook(func(c fakekeychain.Call) error {
					if c.Op == fakekeychain.OpSet {
						return fmt.Errorf("security: add-generic-password %s failed: %s %s", c.Secret, ent.AccessToken, ent.RefreshToken)
					}
					return nil
				})
				check(e.Save(ctx, "small", &Entry{AccessToken: ent.AccessToken, RefreshToken: ent.RefreshToken, IDToken: "changed"}))
				e.fake.SetHook(nil)
				// A write that is silently dropped.
				e.fake.SetHook(func(c fakekeychain.Call) error {
					if c.Op == fakekeychain.OpGet && strings.Contains(c.User, ".g") {
						return fmt.Errorf("dbus: reply for %s", ent.RefreshToken)
					}
					return nil
				})
				_, err = e.Load(ctx, "big")
				check(err)
				e.fake.SetHook(nil)
				e.fake.SetLocked(true)
				check(e.Save(ctx, "small", big))
				_, err = e.Load(ctx, "small")
				check(err)
				e.fake.SetLocked(false)
				// Only the blocked call gets a short deadline: every other
				// call keeps the default one, however loaded the machine.
				release := e.fake.Block()
				bctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				check(e.Save(bctx, "small", big))
				cancel()
				release()
				for _, a := range e.fake.Argv() {
					if found := canary.Find(strings.Join(a, " "), secrets...); len(found) > 0 {
						t.Errorf("secret in child argv %q", a)
					}
				}
			}
			if m.mode == ModeEncryptedFile || m.mode == ModePlaintextFile {
				p := filepath.Join(e.dir, itemID("small")+map[Mode]string{ModeEncryptedFile: ".twenc", ModePlaintextFile: ".json"}[m.mode])
				raw, _ := os.ReadFile(p)
				os.WriteFile(p, raw[:len(raw)/2], 0o600)
				_, err = e.Load(ctx, "small")
				check(err)
				os.Chmod(p, 0o644)
				_, err = e.Load(ctx, "small")
				check(err)
			}
			if len(errs) < 3 {
				t.Fatalf("only %d errors provoked", len(errs))
			}
			var all strings.Builder
			for _, err := range errs {
				fmt.Fprintf(&all, "%+v\n%v\n%s\n", err, err, err)
				for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
					fmt.Fprintf(&all, "%v\n", u)
				}
			}
			all.WriteString(e.Status().String())
			if found := canary.Find(all.String(), secrets...); len(found) > 0 {
				t.Errorf("secrets in errors:\n%s", all.String())
			}
			if found := canary.Find(logs.String(), secrets...); len(found) > 0 {
				t.Errorf("secrets in logs:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), "level=DEBUG") {
				t.Errorf("no debug log captured")
			}
		})
	}
}
