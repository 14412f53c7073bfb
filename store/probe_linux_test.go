//go:build linux

package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dbus "github.com/godbus/dbus/v5"
)

// privateBus starts a dbus-daemon of its own whose activatable services are
// the given .service files, and returns its address.
func privateBus(t *testing.T, services map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus)")
	}
	dir := t.TempDir()
	// A socket path must fit in 108 bytes, which a subtest's TempDir may
	// not: the socket gets a short directory of its own.
	sockDir, err := os.MkdirTemp("", "tw-bus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	svcDir := filepath.Join(dir, "services")
	os.Mkdir(svcDir, 0o700)
	for name, body := range services {
		os.WriteFile(filepath.Join(svcDir, name), []byte(body), 0o600)
	}
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + filepath.Join(sockDir, "bus") + `</listen>
  <auth>EXTERNAL</auth>
  <servicedir>` + svcDir + `</servicedir>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>`
	confPath := filepath.Join(dir, "bus.conf")
	os.WriteFile(confPath, []byte(conf), 0o600)
	cmd := exec.Command("dbus-daemon", "--config-file="+confPath, "--nofork", "--print-address=1")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(addr)
}

// TestProbeBus: gnome-keyring is D-Bus activatable, so the probe accepts a
// Secret Service that is activatable but not running (without activating
// it: starting programs is not a probe's business) or running with an
// unlocked keyring, and reports ErrUnavailable on a bus that has neither.
func TestProbeBus(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The Exec would fail if anything activated it: the probe must not.
	activatable := privateBus(t, map[string]string{"org.freedesktop.secrets.service": "[D-BUS Service]\nName=org.freedesktop.secrets\nExec=/bin/false\n"})
	if err := probeBus(ctx, activatable); err != nil {
		t.Fatalf("activatable Secret Service: probe = %v", err)
	}
	empty := privateBus(t, nil)
	if err := probeBus(ctx, empty); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no Secret Service") {
		t.Fatalf("bus without a Secret Service: probe = %v, want ErrUnavailable", err)
	}
	// Now a Secret Service with an unlocked login keyring owns the name.
	startFakeSecretService(t, empty, map[dbus.ObjectPath]bool{loginCollection: false}, nil)
	if err := probeBus(ctx, empty); err != nil {
		t.Fatalf("owned Secret Service: probe = %v", err)
	}
}

// fakeSecretService plays, on a private bus, the part of a running Secret
// Service that the probe may look at: the service's Collections property
// and the Locked property of collections and aliases. Objects it does not
// serve fail as gnome-keyring's do (godbus, too, answers UnknownMethod).
// It records every call, so that a test can check that the probe reads
// properties only and never asks to unlock (which shows a prompt).
type fakeSecretService struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeSecretService) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeSecretService) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakeProps is the org.freedesktop.DBus.Properties interface of one object.
type fakeProps struct {
	f     *fakeSecretService
	path  dbus.ObjectPath
	props map[string]map[string]any // interface, property
}

// Get implements org.freedesktop.DBus.Properties.Get.
func (p *fakeProps) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	p.f.record(fmt.Sprintf("%s Properties.Get %s.%s", p.path, iface, prop))
	if v, ok := p.props[iface][prop]; ok {
		return dbus.MakeVariant(v), nil
	}
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{prop})
}

// fakeService is the org.freedesktop.Secret.Service interface: every
// method a client could call to unlock or create a keyring, recorded and
// refused.
type fakeService struct{ f *fakeSecretService }

// Unlock records the call and unlocks nothing.
func (s *fakeService) Unlock(objects []dbus.ObjectPath) ([]dbus.ObjectPath, dbus.ObjectPath, *dbus.Error) {
	s.f.record(fmt.Sprint("Service.Unlock ", objects))
	return nil, "/", nil
}

// CreateCollection records the call and creates nothing.
func (s *fakeService) CreateCollection(props map[string]dbus.Variant, alias string) (dbus.ObjectPath, dbus.ObjectPath, *dbus.Error) {
	s.f.record("Service.CreateCollection " + alias)
	return "/", "/", nil
}

// startFakeSecretService serves collections (path: locked) and aliases
// (alias path: collection path) as org.freedesktop.secrets on the bus at
// addr.
func startFakeSecretService(t *testing.T, addr string, collections map[dbus.ObjectPath]bool, aliases map[dbus.ObjectPath]dbus.ObjectPath) *fakeSecretService {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeSecretService{}
	var paths []dbus.ObjectPath
	for p := range collections {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	export := func(v any, path dbus.ObjectPath, iface string) {
		if err := conn.Export(v, path, iface); err != nil {
			t.Fatal(err)
		}
	}
	export(&fakeProps{f: f, path: secretsPath, props: map[string]map[string]any{
		"org.freedesktop.Secret.Service": {"Collections": paths}}}, secretsPath, "org.freedesktop.DBus.Properties")
	export(&fakeService{f: f}, secretsPath, "org.freedesktop.Secret.Service")
	collection := func(path dbus.ObjectPath, locked bool) {
		export(&fakeProps{f: f, path: path, props: map[string]map[string]any{
			"org.freedesktop.Secret.Collection": {"Locked": locked}}}, path, "org.freedesktop.DBus.Properties")
	}
	for p, locked := range collections {
		collection(p, locked)
	}
	for alias, target := range aliases {
		collection(alias, collections[target])
	}
	if reply, err := conn.RequestName(secretsName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName = %v, %v", reply, err)
	}
	return f
}

// TestProbeLockedCollection: with a Secret Service running, the probe
// reads the Locked property of the collection go-keyring would store items
// in (the "login" collection when the service lists it, else the "default"
// alias) and reports ErrLocked, with a message that names the opt-ins,
// when it is locked (saying how to unlock it) or when there is no keyring
// at all (saying that there is none yet and how to create one: creating it
// needs a person too, to choose its password; there is nothing to unlock).
// It only reads properties: it never calls Unlock or CreateCollection,
// which show prompts.
func TestProbeLockedCollection(t *testing.T) {
	t.Parallel()
	const session = dbus.ObjectPath("/org/freedesktop/secrets/collection/session")
	const other = dbus.ObjectPath("/org/freedesktop/secrets/collection/other")
	for _, tt := range []struct {
		name        string
		collections map[dbus.ObjectPath]bool
		aliases     map[dbus.ObjectPath]dbus.ObjectPath
		want        error           // nil or ErrLocked
		wantText    []string        // in the error
		notText     []string        // not in the error
		read        dbus.ObjectPath // whose Locked property the probe reads; "": one the service does not serve
	}{
		{"login unlocked", map[dbus.ObjectPath]bool{loginCollection: false, session: false}, nil, nil, nil, nil, loginCollection},
		{"login locked", map[dbus.ObjectPath]bool{loginCollection: true, session: false}, nil, ErrLocked, []string{"is locked"}, nil, loginCollection},
		{"login unlocked, default alias locked", map[dbus.ObjectPath]bool{loginCollection: false, other: true},
			map[dbus.ObjectPath]dbus.ObjectPath{defaultAlias: other}, nil, nil, nil, loginCollection},
		{"no login, default alias locked", map[dbus.ObjectPath]bool{other: true},
			map[dbus.ObjectPath]dbus.ObjectPath{defaultAlias: other}, ErrLocked, []string{"is locked"}, nil, defaultAlias},
		{"no login, default alias unlocked", map[dbus.ObjectPath]bool{other: false},
			map[dbus.ObjectPath]dbus.ObjectPath{defaultAlias: other}, nil, nil, nil, defaultAlias},
		{"no keyring", map[dbus.ObjectPath]bool{session: false}, nil, ErrLocked, noKeyringWant, noKeyringNot, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), backstop)
			defer cancel()
			addr := privateBus(t, nil)
			f := startFakeSecretService(t, addr, tt.collections, tt.aliases)
			err := probeBus(ctx, addr)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("probe = %v, want nil", err)
				}
			} else {
				if !errors.Is(err, tt.want) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
					t.Fatalf("probe = %v, want %v", err, tt.want)
				}
				for _, w := range append([]string{"Seahorse", "TOKENWARD_STORE=encrypted-file", "TOKENWARD_PASSPHRASE", "TOKENWARD_STORE=memory"}, tt.wantText...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				for _, w := range tt.notText {
					if strings.Contains(err.Error(), w) {
						t.Errorf("error %q says %q", err, w)
					}
				}
			}
			calls := f.recorded()
			wantRead := fmt.Sprintf("%s Properties.Get org.freedesktop.Secret.Collection.Locked", tt.read)
			if tt.read != "" && !slices.Contains(calls, wantRead) {
				t.Errorf("calls %q do not read %s", calls, wantRead)
			}
			for _, c := range calls {
				if !strings.Contains(c, "Properties.Get") {
					t.Errorf("the probe made a call that is not a property read: %q", c)
				}
			}
		})
	}
}

// What an error about a Secret Service without any keyring must say, and
// must not: there is nothing to unlock, one has to be created.
var (
	noKeyringWant = []string{"no keyring yet", "create", "Seahorse", createKeyringCommand}
	noKeyringNot  = []string{"is locked", "unlock it", "unlock the login keyring"}
)

// TestMissingKeyringNamed: when a keychain call fails as locked (go-keyring
// asked to unlock a collection and nobody could answer), the store looks,
// by reading properties only, whether the Secret Service has any keyring;
// with none, the error says so and how to create one instead of asking to
// unlock a keyring that does not exist. It stays ErrLocked: a person must
// act. With a keyring, locked or not, the call's own error is kept.
func TestMissingKeyringNamed(t *testing.T) {
	t.Parallel()
	const session = dbus.ObjectPath("/org/freedesktop/secrets/collection/session")
	cause := &dbus.Error{Name: "org.freedesktop.Secret.Error.IsLocked"}
	for _, tt := range []struct {
		name        string
		collections map[dbus.ObjectPath]bool
		missing     bool
	}{
		{"no keyring", map[dbus.ObjectPath]bool{session: false}, true},
		{"login locked", map[dbus.ObjectPath]bool{loginCollection: true}, false},
		{"login unlocked", map[dbus.ObjectPath]bool{loginCollection: false}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), backstop)
			defer cancel()
			addr := privateBus(t, nil)
			f := startFakeSecretService(t, addr, tt.collections, nil)
			err := explainLockedOn(ctx, addr, cause)
			if !tt.missing {
				if err != error(cause) {
					t.Fatalf("explainLocked = %v, want the call's own error", err)
				}
				return
			}
			if !errors.Is(err, ErrLocked) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("explainLocked = %v, want ErrLocked", err)
			}
			err = withOp("check write", err)
			for _, w := range append(noKeyringWant, "TOKENWARD_STORE=encrypted-file", "TOKENWARD_STORE=memory") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			for _, w := range noKeyringNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%q says %q", err, w)
				}
			}
			for _, c := range f.recorded() {
				if !strings.Contains(c, "Properties.Get") {
					t.Errorf("a call that is not a property read: %q", c)
				}
			}
		})
	}
}
