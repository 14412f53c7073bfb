//go:build linux

package store

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	svcDir := filepath.Join(dir, "services")
	os.Mkdir(svcDir, 0o700)
	for name, body := range services {
		os.WriteFile(filepath.Join(svcDir, name), []byte(body), 0o600)
	}
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + filepath.Join(dir, "bus") + `</listen>
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

// TestProbeBus (K-07): gnome-keyring is D-Bus activatable, so the probe
// accepts a Secret Service that is activatable but not running (without
// activating it) or running, and reports ErrUnavailable on a bus that has
// neither.
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
	// Now something owns the name.
	conn, err := dbus.Connect(empty)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if reply, err := conn.RequestName(secretsName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName = %v, %v", reply, err)
	}
	if err := probeBus(ctx, empty); err != nil {
		t.Fatalf("owned Secret Service: probe = %v", err)
	}
}
