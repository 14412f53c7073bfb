package fakekeychain

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SpawnNames are the programs a keychain client could plausibly start:
// macOS security, godbus's D-Bus autolaunch, libsecret's and KWallet's tools.
var SpawnNames = []string{"security", "dbus-launch", "dbus-daemon", "secret-tool", "gnome-keyring-daemon", "kwallet-query", "kwalletd5", "kwalletd6", "keepassxc-cli", "cmdkey"}

// InstallSpawnRecorder writes, into dir, one executable shell script per
// name that appends its argv and environment to the file it returns and
// exits 1. Put dir first on PATH and any child process started by name is
// recorded: no secret may reach a child's argv or environment (other users
// of the machine can read both), and the store should start none. It needs /bin/sh, so it does not work on Windows.
func InstallSpawnRecorder(dir string, names ...string) (logFile string, err error) {
	if len(names) == 0 {
		names = SpawnNames
	}
	logFile = filepath.Join(dir, "spawned.log")
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		return "", err
	}
	script := fmt.Sprintf("#!/bin/sh\n{ printf 'argv: %%s' \"$0\"; for a in \"$@\"; do printf ' %%s' \"$a\"; done; printf '\\n'; env | sed 's/^/env: /'; } >> '%s'\nexit 1\n",
		strings.ReplaceAll(logFile, "'", `'"'"'`))
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o700); err != nil {
			return "", err
		}
	}
	return logFile, nil
}
