//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package store

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	dbus "github.com/godbus/dbus/v5"
)

const secretsName = "org.freedesktop.secrets"

// secretServiceImpl remembers what implements the Secret Service, for Status.
var secretServiceImpl struct {
	mu   sync.Mutex
	name string
}

// probeOS connects to the session bus named by DBUS_SESSION_BUS_ADDRESS
// only: an unset variable means no session bus, because godbus would then
// run dbus-launch (autolaunch). gnome-keyring is D-Bus activatable, so the
// Secret Service counts as present when its name has an owner or is
// activatable.
func probeOS(ctx context.Context) error {
	return probeBus(ctx, os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
}

// probeBus looks for the Secret Service on the bus at addr.
func probeBus(ctx context.Context, addr string) error {
	if addr == "" || strings.HasPrefix(addr, "autolaunch:") {
		return fail(ErrUnavailable, "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set (tokenward does not autolaunch one)", nil)
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return fail(ErrUnavailable, "cannot connect to the D-Bus session bus", err)
	}
	defer conn.Close()
	bus := conn.BusObject()
	var has bool
	if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, secretsName).Store(&has); err != nil {
		return fail(ErrUnavailable, "the session bus did not answer NameHasOwner", err)
	}
	if !has {
		var names []string
		if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.ListActivatableNames", 0).Store(&names); err != nil {
			return fail(ErrUnavailable, "the session bus did not answer ListActivatableNames", err)
		}
		if !slices.Contains(names, secretsName) {
			return fail(ErrUnavailable, "no Secret Service (org.freedesktop.secrets) on the session bus; install and start gnome-keyring, KWallet or KeePassXC", nil)
		}
		return nil
	}
	var pid uint32
	if bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, secretsName).Store(&pid) == nil {
		if comm, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm"); err == nil {
			secretServiceImpl.mu.Lock()
			secretServiceImpl.name = implName(strings.TrimSpace(string(comm)))
			secretServiceImpl.mu.Unlock()
		}
	}
	return nil
}

// implName maps a process name to the product.
func implName(comm string) string {
	switch {
	case strings.HasPrefix(comm, "gnome-keyring"):
		return "gnome-keyring"
	case strings.HasPrefix(comm, "kwalletd"), strings.HasPrefix(comm, "ksecretd"):
		return "KWallet"
	case strings.HasPrefix(strings.ToLower(comm), "keepassxc"):
		return "KeePassXC"
	}
	return ""
}

func osBackendName() string {
	secretServiceImpl.mu.Lock()
	defer secretServiceImpl.mu.Unlock()
	if secretServiceImpl.name != "" {
		return secretServiceImpl.name + " via Secret Service"
	}
	return "Secret Service (D-Bus org.freedesktop.secrets)"
}
