package fakekeychain

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// MacOSCommand returns the exact line go-keyring v0.2.8 writes to the stdin of
// `/usr/bin/security -i` to store secret: the secret base64-encoded behind a
// prefix, every field POSIX-quoted, and a trailing newline. Its length
// decides whether security stores the item (see [Fake.Set]).
func MacOSCommand(service, user, secret string) string {
	password := "go-keyring-base64:" + base64.StdEncoding.EncodeToString([]byte(secret))
	return fmt.Sprintf("add-generic-password -U -s %s -a %s -w %s\n", shellQuote(service), shellQuote(user), shellQuote(password))
}

// shellQuote is go-keyring's internal shellescape.Quote: strings of
// [A-Za-z0-9_@%+=:,./-] stay as they are, anything else is single-quoted.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, unsafeShell) >= 0 {
		return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
	}
	return s
}

// macSplit returns the service and account names security's own tokenizer
// makes of the shell-quoted names (go-keyring#154): it is not a shell,
// so a backslash is silently dropped (the item lands under another name), a
// single quote (quoted shell-style as '"'"') is a usage error, and a newline
// ends the command early (also a usage error).
func macSplit(service, user string) (string, string, error) {
	for _, s := range []string{service, user} {
		if strings.ContainsAny(s, "'\n") {
			return "", "", &ExitError{Code: 2}
		}
	}
	drop := strings.NewReplacer(`\`, "")
	return drop.Replace(service), drop.Replace(user), nil
}

func unsafeShell(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_@%+=:,./-", r))
}
