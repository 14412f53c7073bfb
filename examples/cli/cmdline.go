package main

import (
	"strings"
)

// cmdline is a command line a hint suggests: the global flags the user
// typed (with changes the hint makes), a command, the command's own flags
// and its arguments. Flags that were not typed are left out, because they
// come from the environment, which the suggested command inherits.
type cmdline struct {
	flags    []typedFlag // global flags, in name order
	cmd      string
	cmdFlags []typedFlag // the command's own flags, such as --device
	args     []string
}

// with returns l with the global flag name set to value, replacing what
// the user typed for it.
func (l cmdline) with(name, value string) cmdline {
	out := l.without(name)
	out.flags = mergeTyped(out.flags, []typedFlag{{name, value}})
	return out
}

// without returns l without the global flag name.
func (l cmdline) without(name string) cmdline {
	out := l
	out.flags = nil
	for _, f := range l.flags {
		if f.name != name {
			out.flags = append(out.flags, f)
		}
	}
	return out
}

// command returns l running cmd with the given own flags and arguments.
func (l cmdline) command(cmd string, cmdFlags []typedFlag, args ...string) cmdline {
	out := l
	out.cmd, out.cmdFlags, out.args = cmd, cmdFlags, args
	return out
}

// String renders l for a shell, each value quoted when it needs to be.
// Login parameters whose name suggests a credential are shown as
// key=... (never their value).
func (l cmdline) String() string {
	parts := []string{"cli"}
	render := func(fs []typedFlag) {
		for _, f := range fs {
			switch f.value {
			case "true":
				parts = append(parts, "--"+f.name)
			case "false":
				parts = append(parts, "--"+f.name+"=false")
			default:
				v := f.value
				if f.name == "param" {
					if k, _, _ := strings.Cut(v, "="); secretParam(k) {
						v = k + "=..."
					}
				}
				parts = append(parts, "--"+f.name, shellQuote(v))
			}
		}
	}
	render(l.flags)
	if l.cmd != "" {
		parts = append(parts, l.cmd)
	}
	render(l.cmdFlags)
	for _, a := range l.args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// secretParam reports whether a login parameter's name suggests its value
// is a credential (id_token_hint, a client assertion, ...), which a
// suggested command must not repeat.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"token", "secret", "assertion", "password", "code", "key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// shellQuote returns s as one shell word: as it is when it holds only
// characters no shell treats specially, in single quotes otherwise. What
// the server sent never goes through here unescaped: values are what the
// user typed, or fixed placeholders.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(printable(s), "'", `'\''`) + "'"
}
