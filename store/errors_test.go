package store

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	dbus "github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/zalando/go-keyring"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// TestClassify feeds the errors go-keyring returns on each OS (recorded
// from its source: keyring sentinels, godbus errors, security exit
// statuses, Windows errnos) through the mapping, so that a caller can
// tell a missing entry, a locked keychain and a missing keychain apart on
// every OS with errors.Is alone.
func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"keyring not found", keyring.ErrNotFound, ErrNotFound},
		{"wrapped not found", fmt.Errorf("x: %w", keyring.ErrNotFound), ErrNotFound},
		{"too big", keyring.ErrSetDataTooBig, ErrTooLarge},
		{"unsupported platform", keyring.ErrUnsupportedPlatform, ErrUnavailable},
		{"no bus (dial)", noBusErr(), ErrUnavailable},
		{"no session bus address", errors.New("dbus: couldn't determine address of session bus"), ErrUnavailable},
		{"autolaunch failed", &exec.Error{Name: "dbus-launch", Err: exec.ErrNotFound}, ErrUnavailable},
		{"service unknown", dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, ErrUnavailable},
		{"service unknown ptr", &dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, ErrUnavailable},
		{"is locked", fakekeychain.DBusError("org.freedesktop.Secret.Error.IsLocked"), ErrLocked},
		{"no reply", fakekeychain.DBusError("org.freedesktop.DBus.Error.NoReply"), ErrTimeout},
		{"prompt dismissed", fakekeychain.ErrLockedCollection, ErrLocked},
		{"mac not found", &fakekeychain.ExitError{Code: 44}, ErrNotFound},
		{"mac interaction not allowed", &fakekeychain.ExitError{Code: 36}, ErrLocked},
		{"mac auth failed", &fakekeychain.ExitError{Code: 51}, ErrLocked},
		{"mac other", &fakekeychain.ExitError{Code: 1}, ErrUnavailable},
		{"windows not found", syscall.Errno(1168), ErrNotFound},
		{"windows bad stub data", syscall.Errno(1783), ErrTooLarge},
		{"windows no logon session", syscall.Errno(1312), ErrUnavailable},
		{"deadline", context.DeadlineExceeded, ErrTimeout},
		{"canceled", context.Canceled, context.Canceled},
		{"already ours", fail(ErrWriteVerify, "", nil), ErrWriteVerify},
		{"unknown", errors.New("something else"), ErrUnavailable},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("%s: classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestErrorShape(t *testing.T) {
	t.Parallel()
	if !errors.Is(ErrNotFound, keyring.ErrNotFound) {
		t.Error("ErrNotFound does not match keyring.ErrNotFound")
	}
	if !errors.Is(ErrUnsupportedVersion, ErrCorrupt) {
		t.Error("ErrUnsupportedVersion does not match ErrCorrupt")
	}
	secret := canary.New("rt")
	cause := errors.New("security: bad line add-generic-password -w " + secret)
	err := withOp("save", fail(classify(cause), "", cause), secret)
	msg := fmt.Sprintf("%+v", err)
	if !strings.HasPrefix(msg, "store: save: ") || canary.Find(msg, secret) != nil {
		t.Errorf("message %q: want the op and no secret", msg)
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) {
		t.Errorf("%v does not match its kind and cause", err)
	}
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	to := ctxError(expired, "")
	if !errors.Is(to, ErrTimeout) || !errors.Is(to, context.DeadlineExceeded) {
		t.Errorf("timeout %v does not match ErrTimeout and DeadlineExceeded", to)
	}
}

func noBusErr() error {
	f := fakekeychain.NewSecretService()
	f.SetNoBus(true)
	return f.Available(context.Background())
}

// TestErrorMessagesHaveHints: every sentinel's message starts with the
// package name and says what to do; the unavailable and locked ones name
// the opt-ins and how to unlock.
func TestErrorMessagesHaveHints(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		msg := k.Error()
		if k == ErrInvalidConfig {
			// Shared with the other packages: its store errors carry the hint.
			msg = fail(k, "", nil).Error()
		}
		if !strings.HasPrefix(msg, "store: ") || len(msg) < 40 {
			t.Errorf("%q: want a store: prefix and a hint", msg)
		}
	}
	for _, want := range []string{"encrypted-file", "TOKENWARD_PASSPHRASE", "memory", "plaintext-file", "TOKENWARD_STORE"} {
		if !strings.Contains(ErrUnavailable.Error(), want) {
			t.Errorf("ErrUnavailable does not name %s", want)
		}
	}
	if !strings.Contains(ErrLocked.Error(), "unlock") {
		t.Error("ErrLocked has no unlock hint")
	}
	if !errors.Is(ErrNotFound, ErrNotFound) || cmp.Equal(ErrNotFound.Error(), "") {
		t.Error("sentinel broken")
	}
}
