package fakekeychain

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	dbus "github.com/godbus/dbus/v5"
	"github.com/zalando/go-keyring"
)

// LoginCollection is the object path of the collection the Secret Service
// model keeps its items in, as gnome-keyring names the login keyring.
const LoginCollection = "/org/freedesktop/secrets/collection/login"

// ItemPath returns the object path of the n-th item created in the Secret
// Service model's collection.
func ItemPath(n uint64) string { return LoginCollection + "/" + strconv.FormatUint(n, 10) }

// VanishedItemError is what gnome-keyring 42 answers, through godbus, to a
// call on the object path of an item that was deleted after a search found
// it: go-keyring's Get searches for the item and then calls
// org.freedesktop.Secret.Item.GetSecret on the path found, and its Delete
// calls org.freedesktop.Secret.Item.Delete there. GDBus, which
// gnome-keyring uses, reports a vanished object as UnknownMethod (and, when
// the path's node is gone too, with the text "Object does not exist at
// path ...").
func VanishedItemError(path string) error {
	return dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod",
		Body: []any{fmt.Sprintf("No such interface “org.freedesktop.Secret.Item” on object at path %s", path)}}
}

// SetAfterSearch installs a function that the Secret Service model runs in
// every Get and Delete between the search that found the item and the call
// on the item, with no lock held: what it does (another process deleting
// or replacing the item) shows exactly as it would on gnome-keyring. An
// item deleted meanwhile fails the call with [VanishedItemError]; one
// replaced in place (a Set) is read with its new value. nil removes it.
// It is not run when the search finds nothing.
func (f *Fake) SetAfterSearch(fn func(Call)) {
	f.mu.Lock()
	f.afterSearch = fn
	f.mu.Unlock()
}

// search finds the object path of the item c names (SearchItems).
func (f *Fake) search(c Call) (key string, path uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return "", 0, err
	}
	key = f.target(c.Service, c.User)
	path, ok := f.paths[key]
	if !ok {
		return "", 0, keyring.ErrNotFound
	}
	return key, path, nil
}

// between runs the after-search function, if any.
func (f *Fake) between(c Call) {
	f.mu.Lock()
	fn := f.afterSearch
	f.mu.Unlock()
	if fn != nil {
		fn(c)
	}
}

// searchThenRead is go-keyring's Get on the Secret Service.
func (f *Fake) searchThenRead(c Call) (string, error) {
	key, path, err := f.search(c)
	if err != nil {
		return "", err
	}
	f.between(c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return "", err
	}
	if f.paths[key] != path {
		return "", VanishedItemError(ItemPath(path))
	}
	return f.items[key], nil
}

// searchThenDelete is go-keyring's Delete on the Secret Service.
func (f *Fake) searchThenDelete(c Call) error {
	key, path, err := f.search(c)
	if err != nil {
		return err
	}
	f.between(c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.stateErr(c); err != nil {
		return err
	}
	if f.paths[key] != path {
		return VanishedItemError(ItemPath(path))
	}
	return f.crashPoint(func() { f.remove(key) })
}

// remove deletes an item and its object path. f.mu is held.
func (f *Fake) remove(key string) {
	delete(f.items, key)
	delete(f.paths, key)
}

// Available reports whether the keychain can be reached: for the Secret
// Service model, an error like godbus's when there is no session bus, and
// an org.freedesktop.Secret.Error.IsLocked D-Bus error while the collection
// is locked (the real probe reads the collection's Locked property). The
// other models report nothing about a lock, as their probes cannot tell.
func (f *Fake) Available(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noBus {
		return noBusError()
	}
	if f.locked && f.model == SecretService {
		return dbus.Error{Name: "org.freedesktop.Secret.Error.IsLocked", Body: []any{"fake: " + LoginCollection + " is locked"}}
	}
	return nil
}

// noBusError is what godbus returns when DBUS_SESSION_BUS_ADDRESS points at
// nothing: a dial error, not a keyring sentinel.
func noBusError() error {
	return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: "/run/user/1000/bus", Net: "unix"},
		Err: os.NewSyscallError("connect", syscall.ENOENT)}
}

// DBusError returns a D-Bus error reply with the given name, as godbus
// returns it from a method call (for hooks).
func DBusError(name string) error {
	return dbus.Error{Name: name, Body: []any{"fake " + name}}
}
