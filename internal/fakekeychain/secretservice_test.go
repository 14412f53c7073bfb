package fakekeychain

import (
	"context"
	"errors"
	"strings"
	"testing"

	dbus "github.com/godbus/dbus/v5"
	"github.com/zalando/go-keyring"
)

// TestSecretServiceVanishedItem: the Secret Service model's Get and Delete
// search first and use the object path found; an item another process
// deletes in between fails them with gnome-keyring's error for a vanished
// object, and one replaced in place (a Set) is read with its new value.
func TestSecretServiceVanishedItem(t *testing.T) {
	t.Parallel()
	f := NewSecretService()
	if err := f.Set("s", "u", "v1"); err != nil {
		t.Fatal(err)
	}
	// once runs fn in the gap of the next Get or Delete only (fn's own
	// calls do not run it again).
	once := func(fn func()) {
		f.SetAfterSearch(func(Call) {
			f.SetAfterSearch(nil)
			fn()
		})
	}

	once(func() { f.Set("s", "u", "v2") })
	if got, err := f.Get("s", "u"); err != nil || got != "v2" {
		t.Fatalf("Get with a replace in between = %q, %v; want the new value", got, err)
	}

	once(func() { f.Delete("s", "u") })
	_, err := f.Get("s", "u")
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownMethod" ||
		!strings.Contains(de.Body[0].(string), ItemPath(1)) {
		t.Fatalf("Get with a delete in between = %v, want UnknownMethod for %s", err, ItemPath(1))
	}
	if _, err := f.Get("s", "u"); !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("Get after the delete = %v, want ErrNotFound", err)
	}

	// A new item gets a new path, so a delete of the old one's path fails
	// even when an item of the same name exists again.
	f.Set("s", "u", "v3")
	once(func() {
		f.Delete("s", "u")
		f.Set("s", "u", "v4")
	})
	if err := f.Delete("s", "u"); !errors.As(err, &de) || !strings.Contains(de.Body[0].(string), ItemPath(2)) {
		t.Fatalf("Delete with a delete and re-create in between = %v, want UnknownMethod for %s", err, ItemPath(2))
	}
	if got, _ := f.Get("s", "u"); got != "v4" {
		t.Fatalf("the re-created item was deleted: %q", got)
	}

	// Nothing found: no hook, ErrNotFound.
	called := false
	f.SetAfterSearch(func(Call) { called = true })
	if _, err := f.Get("s", "absent"); !errors.Is(err, keyring.ErrNotFound) || called {
		t.Fatalf("Get of an absent item = %v (hook called: %v)", err, called)
	}
	// A clone keeps the items' paths.
	if got, err := f.Clone().Get("s", "u"); err != nil || got != "v4" {
		t.Fatalf("clone Get = %q, %v", got, err)
	}
}

// TestSecretServiceAvailableLocked: the Secret Service model reports a
// locked collection from Available, as the store's probe of a real Secret
// Service does; the other models cannot tell and report nothing.
func TestSecretServiceAvailableLocked(t *testing.T) {
	t.Parallel()
	for _, m := range []Model{Generic, Windows, MacOS, SecretService} {
		f := New(m)
		f.SetLocked(true)
		err := f.Available(context.Background())
		var de dbus.Error
		if m == SecretService {
			if !errors.As(err, &de) || de.Name != "org.freedesktop.Secret.Error.IsLocked" {
				t.Errorf("%v: Available while locked = %v, want IsLocked", m, err)
			}
		} else if err != nil {
			t.Errorf("%v: Available while locked = %v, want nil", m, err)
		}
		f.SetLocked(false)
		if err := f.Available(context.Background()); err != nil {
			t.Errorf("%v: Available = %v", m, err)
		}
	}
}
