package redact

import "strings"

// Scrub removes every occurrence of the given secrets (those of 4 bytes or
// more) from s, escapes what a terminal could act on (Terminal: escape
// sequences, C1 controls, bidi overrides), then removes everything String
// removes and bounds the result to max bytes with Truncate. The secrets go
// first, so that no fragment of one survives the cut. It is how an error
// message that may quote foreign text (a server's answer, a keychain's
// error) is made safe to return, log and print.
func Scrub(s string, max int, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Placeholder)
		}
	}
	return Truncate(Terminal(s), max)
}
