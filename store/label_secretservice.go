//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	dbus "github.com/godbus/dbus/v5"
)

// labelItems sets the Label property of the Secret Service items of service
// whose user names labels lists, on the session bus. It changes only the
// label: the item's attributes (its identity, which go-keyring searches
// by) and its secret stay as they are, so a reader of any version finds
// the item as before.
func (osKeyring) labelItems(ctx context.Context, service string, labels map[string]string) error {
	return labelItemsOn(ctx, os.Getenv("DBUS_SESSION_BUS_ADDRESS"), service, labels)
}

// labelItemsOn is labelItems on the bus at addr. Like the probe it never
// autolaunches a bus. It looks each item up the way go-keyring does (by
// its "service" and "username" attributes in the collection go-keyring
// uses) and skips items that are not there: another process may have
// deleted or replaced them meanwhile, which is no failure of a label.
func labelItemsOn(ctx context.Context, addr, service string, labels map[string]string) error {
	if addr == "" || strings.HasPrefix(addr, "autolaunch:") {
		return fail(ErrUnavailable, "no D-Bus session bus to label keychain items on", nil)
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("label keychain items: connect to the session bus: %w", err)
	}
	defer conn.Close()
	coll := conn.Object(secretsName, keyringCollection(ctx, conn))
	users := make([]string, 0, len(labels))
	for u := range labels {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, user := range users {
		var paths []dbus.ObjectPath
		attrs := map[string]string{"username": user, "service": service}
		if err := coll.CallWithContext(ctx, "org.freedesktop.Secret.Collection.SearchItems", 0, attrs).Store(&paths); err != nil {
			return fmt.Errorf("label keychain items: search: %w", err)
		}
		for _, p := range paths {
			err := conn.Object(secretsName, p).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Set", 0,
				"org.freedesktop.Secret.Item", "Label", dbus.MakeVariant(labels[user])).Err
			if err != nil && !isNoSuchObject(err) {
				return fmt.Errorf("label keychain items: set the label: %w", err)
			}
		}
	}
	return nil
}
