//go:build linux

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dbus "github.com/godbus/dbus/v5"
)

// Environment of the locked-keychain helper process.
const (
	helperScenario = "TOKENWARD_STORE_HELPER_SCENARIO" // "locked", "no-keyring" or "activatable"
	helperPassword = "TOKENWARD_STORE_HELPER_PASSWORD" // of the throwaway keyring
)

func init() { helperModes["keychain-locked"] = lockedKeychainMain }

// TestKeychainLocked runs against a gnome-keyring of its own, started for
// it in a private D-Bus session with throwaway keyrings, so that locking
// its keyring cannot disturb the other keychain tests, which share the
// suite's gnome-keyring (and run in parallel, in this package and others).
// In "locked" the helper process locks the login keyring without a prompt
// (Service.Lock needs none) and checks that Open fails at once with
// ErrLocked, saying how to unlock and naming the opt-ins, without asking
// the keyring to unlock (no Unlock call, no prompt), that CheckWrite on a
// store opened before reports ErrLocked too, and that after an unlock
// (gnome-keyring's UnlockWithMasterPassword, which needs no prompter)
// everything works again and nothing is left behind. In "no-keyring" the
// service has no keyring at all: Open fails with ErrLocked, because
// creating one needs a person, says that there is none yet and how to
// create one (not to unlock one), and creates nothing. In "activatable"
// the service is not running yet, only D-Bus activatable (a headless
// machine with gnome-keyring installed): Open succeeds without starting
// it, and the first keychain call, which starts it, finds no keyring and
// fails with the same advice.
func TestKeychainLocked(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	for _, tool := range []string{"dbus-run-session", "gnome-keyring-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the keychain suite needs it", tool)
		}
	}
	for _, scenario := range []string{"locked", "no-keyring", "activatable"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			out, err := runInPrivateKeyring(t, scenario)
			if err != nil {
				t.Fatalf("helper in a private gnome-keyring: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// runInPrivateKeyring runs the keychain-locked helper in a new D-Bus
// session with a gnome-keyring of its own: with its login keyring created
// and unlocked by a password ("locked"), with no keyring ("no-keyring"), or
// not started at all, left for D-Bus to activate ("activatable").
// No display is passed on, so no prompt can appear anywhere.
func runInPrivateKeyring(t *testing.T, scenario string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "tw-keyring-") // short: gnome-keyring puts sockets in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "DISPLAY", "WAYLAND_DISPLAY",
			"XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK":
			continue
		}
		env = append(env, kv)
	}
	for _, d := range []string{"data", "runtime", "config", "locks"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env = append(env, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_RUNTIME_DIR="+filepath.Join(dir, "runtime"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), helperLockDir+"="+filepath.Join(dir, "locks"),
		helperEnv+"=keychain-locked", helperScenario+"="+scenario, helperPassword+"=tokenward-locked-test",
		"GORACE=atexit_sleep_ms=0")
	start := `eval "$(gnome-keyring-daemon --start --components=secrets)"`
	switch scenario {
	case "locked":
		// A password on stdin creates the login keyring and unlocks it.
		start = `eval "$(printf %s "$` + helperPassword + `" | gnome-keyring-daemon --unlock --components=secrets)"`
	case "activatable":
		start = "true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*backstop)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--", "sh", "-c",
		start+` && export GNOME_KEYRING_CONTROL && exec "$0" -test.run='^TestHelperProcess$' -test.count=1`, os.Args[0])
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// lockedKeychainMain is the helper of TestKeychainLocked, inside its
// private gnome-keyring.
func lockedKeychainMain() error {
	ctx := context.Background()
	opts := func(o *Options) {
		o.Mode = ModeKeychain
		o.Service = "tokenward-locked-test"
		o.LockDir = os.Getenv(helperLockDir)
		o.Timeout = backstop
		o.probeTimeout = backstop // the answer must come from the keyring, not a deadline
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return err
	}
	defer conn.Close()
	watch, err := watchPrompts()
	if err != nil {
		return err
	}
	switch os.Getenv(helperScenario) {
	case "activatable":
		// Nothing may touch the service before Open: a call would start it.
		s, err := Open(ctx, opts)
		if err != nil {
			return fmt.Errorf("Open with an activatable Secret Service: %w", err)
		}
		if err := wantNoKeyring("CheckWrite without a keyring", s.CheckWrite(ctx)); err != nil {
			return err
		}
		if err := wantNoKeyring("Save without a keyring", s.Save(ctx, "k", canaryEntry())); err != nil {
			return err
		}
		if after := collections(conn); strings.Contains(after, string(loginCollection)) {
			return fmt.Errorf("a login keyring appeared: %s", after)
		}
		// The advice works: after the command the message gives, the
		// same store saves.
		if err := createKeyringAsAdvised(); err != nil {
			return err
		}
		if err := s.CheckWrite(ctx); err != nil {
			return fmt.Errorf("CheckWrite after creating a keyring as advised: %w", err)
		}
		if err := s.Save(ctx, "k", canaryEntry()); err != nil {
			return fmt.Errorf("Save after creating a keyring as advised: %w", err)
		}
		if err := s.Delete(ctx, "k"); err != nil {
			return err
		}
		fmt.Println("activatable: Open succeeded; CheckWrite and Save reported ErrLocked saying there is no keyring yet and how to create one; after doing so, all well")
		return nil
	case "no-keyring":
		before := collections(conn)
		_, err := Open(ctx, opts)
		if err := wantNoKeyring("Open without a keyring", err); err != nil {
			return err
		}
		if err := wantNoKeyring("Available without a keyring", available(ctx, backstop)); err != nil {
			return err
		}
		if calls := watch(conn); len(calls) != 0 {
			return fmt.Errorf("Open and Available asked the Secret Service to unlock or create: %q", calls)
		}
		if after := collections(conn); after != before {
			return fmt.Errorf("collections changed from %s to %s", before, after)
		}
		if err := createKeyringAsAdvised(); err != nil {
			return err
		}
		if _, err := Open(ctx, opts); err != nil {
			return fmt.Errorf("Open after creating a keyring as advised: %w", err)
		}
		fmt.Println("no keyring: Open and Available report ErrLocked and create nothing; after creating a keyring as advised, Open succeeds")
		return nil
	}

	s, err := Open(ctx, opts)
	if err != nil {
		return fmt.Errorf("Open on the unlocked keyring: %w", err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		return fmt.Errorf("CheckWrite on the unlocked keyring: %w", err)
	}
	ent := canaryEntry()
	if err := s.Save(ctx, "k", ent); err != nil {
		return err
	}
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	if err := conn.Object(secretsName, secretsPath).Call("org.freedesktop.Secret.Service.Lock", 0,
		[]dbus.ObjectPath{loginCollection}).Store(&locked, &prompt); err != nil || prompt != "/" {
		return fmt.Errorf("Lock = %v, prompt %q, %v", locked, prompt, err)
	}
	watch(conn) // what the store did before is no concern here
	start := time.Now()
	_, err = Open(ctx, opts)
	took := time.Since(start)
	if err := wantLocked("Open on the locked keyring", err, "is locked"); err != nil {
		return err
	}
	if err := wantLocked("Available on the locked keyring", available(ctx, backstop), "is locked"); err != nil {
		return err
	}
	if calls := watch(conn); len(calls) != 0 {
		return fmt.Errorf("Open and Available asked the Secret Service to unlock: %q", calls)
	}
	// Without a display the prompt go-keyring asks for fails at once.
	if err := s.CheckWrite(ctx); !errors.Is(err, ErrLocked) {
		return fmt.Errorf("CheckWrite on the locked keyring = %v, want ErrLocked", err)
	}
	if _, err := s.Load(ctx, "k"); !errors.Is(err, ErrLocked) {
		return fmt.Errorf("Load on the locked keyring = %v, want ErrLocked", err)
	}
	// go-keyring's calls do ask to unlock: the monitor would have seen
	// the probe do so.
	if calls := watch(conn); len(calls) == 0 {
		return errors.New("the monitor saw no Unlock from go-keyring's calls on the locked keyring: it would miss the probe's too")
	}
	if err := unlockWithPassword(conn, os.Getenv(helperPassword)); err != nil {
		return err
	}
	s, err = Open(ctx, opts)
	if err != nil {
		return fmt.Errorf("Open after the unlock: %w", err)
	}
	if got, err := s.Load(ctx, "k"); err != nil || got.RefreshToken != ent.RefreshToken {
		return fmt.Errorf("Load after the unlock: %v", err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		return fmt.Errorf("CheckWrite after the unlock: %w", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		return err
	}
	if n, err := serviceItems(conn, "tokenward-locked-test"); err != nil || n != 0 {
		return fmt.Errorf("%d items left (%v)", n, err)
	}
	fmt.Printf("locked: Open and Available reported ErrLocked after %v without asking to unlock; CheckWrite and Load ErrLocked; all well after the unlock\n", took)
	return nil
}

// wantLocked checks that err is an ErrLocked that says what and how.
func wantLocked(what string, err error, text string) error {
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s = %v, want ErrLocked", what, err)
	}
	for _, w := range []string{text, "Seahorse", "TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE", "TOKENWARD_STORE=memory"} {
		if !strings.Contains(err.Error(), w) {
			return fmt.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
	return nil
}

// createKeyringAsAdvised runs the command the no-keyring error gives,
// with the helper's password.
func createKeyringAsAdvised() error {
	cmd := exec.Command("sh", "-c", createKeyringCommand)
	cmd.Env = append(os.Environ(), "PASSWORD="+os.Getenv(helperPassword))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", createKeyringCommand, err, out)
	}
	return nil
}

// wantNoKeyring checks that err is an ErrLocked that says there is no
// keyring yet and how to create one, and does not ask to unlock one.
func wantNoKeyring(what string, err error) error {
	if err := wantLocked(what, err, "no keyring yet"); err != nil {
		return err
	}
	for _, w := range noKeyringWant {
		if !strings.Contains(err.Error(), w) {
			return fmt.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
	for _, w := range noKeyringNot {
		if strings.Contains(err.Error(), w) {
			return fmt.Errorf("%s: %q says %q", what, err, w)
		}
	}
	return nil
}

// watchPrompts makes a monitor connection that sees every call that
// unlocks or creates a keyring or shows a prompt, and returns a function
// that returns the calls seen since its last call. It marks the end with a
// harmless Unlock of nothing, made on conn, so it misses none.
func watchPrompts() (func(conn *dbus.Conn) []string, error) {
	mon, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, err
	}
	rules := []string{
		"type='method_call',interface='org.freedesktop.Secret.Service',member='Unlock'",
		"type='method_call',interface='org.freedesktop.Secret.Service',member='CreateCollection'",
		"type='method_call',interface='org.freedesktop.Secret.Prompt'",
	}
	if err := mon.BusObject().Call("org.freedesktop.DBus.Monitoring.BecomeMonitor", 0, rules, uint32(0)).Err; err != nil {
		return nil, fmt.Errorf("BecomeMonitor: %w", err)
	}
	msgs := make(chan *dbus.Message, 256)
	mon.Eavesdrop(msgs)
	return func(conn *dbus.Conn) []string {
		var marker []dbus.ObjectPath
		var prompt dbus.ObjectPath
		conn.Object(secretsName, secretsPath).Call("org.freedesktop.Secret.Service.Unlock", 0, []dbus.ObjectPath{}).Store(&marker, &prompt)
		var calls []string
		for m := range msgs {
			if m.Type != dbus.TypeMethodCall {
				continue // the bus tells a new monitor it lost its name
			}
			member, _ := m.Headers[dbus.FieldMember].Value().(string)
			if member == "Unlock" && len(m.Body) == 1 {
				if objs, ok := m.Body[0].([]dbus.ObjectPath); ok && len(objs) == 0 {
					return calls
				}
			}
			calls = append(calls, fmt.Sprint(member, m.Body))
		}
		return calls
	}, nil
}

// collections renders the Secret Service's Collections property.
func collections(conn *dbus.Conn) string {
	v, err := conn.Object(secretsName, secretsPath).GetProperty("org.freedesktop.Secret.Service.Collections")
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(v.Value())
}

// unlockWithPassword unlocks the login keyring through gnome-keyring's
// internal interface, the way its own tools do without a prompter.
func unlockWithPassword(conn *dbus.Conn, password string) error {
	svc := conn.Object(secretsName, secretsPath)
	var out dbus.Variant
	var session dbus.ObjectPath
	if err := svc.Call("org.freedesktop.Secret.Service.OpenSession", 0, "plain", dbus.MakeVariant("")).Store(&out, &session); err != nil {
		return fmt.Errorf("OpenSession: %w", err)
	}
	defer conn.Object(secretsName, session).Call("org.freedesktop.Secret.Session.Close", 0)
	secret := struct {
		Session     dbus.ObjectPath
		Parameters  []byte
		Value       []byte
		ContentType string
	}{session, []byte{}, []byte(password), "text/plain"}
	if err := svc.Call("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface.UnlockWithMasterPassword", 0,
		loginCollection, secret).Err; err != nil {
		return fmt.Errorf("UnlockWithMasterPassword: %w", err)
	}
	return nil
}

// serviceItems counts the items filed under service in the login keyring.
func serviceItems(conn *dbus.Conn, service string) (int, error) {
	var items []dbus.ObjectPath
	err := conn.Object(secretsName, loginCollection).Call("org.freedesktop.Secret.Collection.SearchItems", 0,
		map[string]string{"service": service}).Store(&items)
	return len(items), err
}

// TestKeychainCheckWrite on the suite's gnome-keyring: CheckWrite passes,
// leaves a stored entry as it was and leaves no item of its own behind.
func TestKeychainCheckWrite(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, osKeychain(nil))
	s, service := e.Store, e.service
	ent := canaryEntry()
	if err := s.Save(ctx, "k", ent); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.CheckWrite(ctx); err != nil {
			t.Fatalf("CheckWrite = %v", err)
		}
	}
	got, err := s.Load(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	mustEqualEntry(t, got, ent)
	conn, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := serviceItems(conn, service); err != nil || n != 1 {
		t.Fatalf("%d items under the service after the checks (%v), want the entry's 1", n, err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if n, err := serviceItems(conn, service); err != nil || n != 0 {
		t.Fatalf("%d items left (%v)", n, err)
	}
}
