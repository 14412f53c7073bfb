package redact

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestTerminal(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{"plain", "BCDF-GHJK https://as.example/device?x=1", "BCDF-GHJK https://as.example/device?x=1"},
		{"empty", "", ""},
		{"non-ASCII letters kept", "Grüße, 東京 ✓ \ufffd", "Grüße, 東京 ✓ \ufffd"},
		{"backslash kept", `C:\path`, `C:\path`},
		{"CSI colour", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"clear screen", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"OSC 8 hyperlink", "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", `\x1b]8;;https://evil.example\x1b\click\x1b]8;;\x1b\`},
		{"OSC title with BEL", "\x1b]0;pwned\a", `\x1b]0;pwned\x07`},
		{"CR overwrite", "https://evil.example\rhttps://as.example", `https://evil.example\x0dhttps://as.example`},
		{"newline and tab", "a\nb\tc", `a\x0ab\x09c`},
		{"backspace", "evil\b\b\b\bgood", `evil\x08\x08\x08\x08good`},
		{"NUL", "a\x00b", `a\x00b`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI as UTF-8", "\u009b31mred", `\u009b31mred`},
		{"C1 OSC as UTF-8", "\u009d8;;x\u009c", `\u009d8;;x\u009c`},
		{"C1 NEL", "a\u0085b", `a\u0085b`},
		{"raw 8-bit CSI", "\x9b31mred", `\x9b31mred`},
		{"raw 8-bit OSC", "\x9d0;t\x07", `\x9d0;t\x07`},
		{"right-to-left override", "user\u202egpj.exe", `user\u202egpj.exe`},
		{"bidi embeddings", "\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"bidi isolates", "\u2066a\u2067b\u2068c\u2069", `\u2066a\u2067b\u2068c\u2069`},
		{"bidi marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width and BOM", "as\u200bexample\ufeff", `as\u200bexample\ufeff`},
		{"line separators", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"tag character", "a\U000e0041", `a\U000e0041`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"surrogate bytes", "\xed\xa0\x80", `\xed\xa0\x80`},
	}
	for _, c := range cases {
		if got := Terminal(c.in); got != c.want {
			t.Errorf("%s: Terminal(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// assertTerminalSafe checks the promise of Terminal on its output.
func assertTerminalSafe(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("Terminal(%q) = %q is not valid UTF-8", in, out)
	}
	for i := 0; i < len(out); i++ {
		if out[i] < 0x20 || out[i] == 0x7f {
			t.Fatalf("Terminal(%q) = %q holds byte %#x", in, out, out[i])
		}
	}
	for _, r := range out {
		if (r >= 0x80 && r <= 0x9f) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			t.Fatalf("Terminal(%q) = %q holds %U", in, out, r)
		}
	}
}

func FuzzTerminal(f *testing.F) {
	for _, s := range []string{
		"", "BCDF-GHJK", "\x1b]8;;https://evil.example\x1b\\x\x1b]8;;\x1b\\", "\x9b2J", "\u009b2J",
		"\u202eevil", "a\rb", "\xff\xfe", "Grüße \u2066x\u2069", "\\x1b", "\U000e0001",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Terminal(in)
		assertTerminalSafe(t, in, out)
		if again := Terminal(out); again != out {
			t.Fatalf("Terminal is not idempotent: %q -> %q -> %q", in, out, again)
		}
		// Safe text passes unchanged; anything else is escaped, never
		// dropped, so the output is longer.
		if firstUnsafe(in) < 0 {
			if out != in {
				t.Fatalf("Terminal(%q) = %q changed safe text", in, out)
			}
		} else if len(out) <= len(in) || !strings.Contains(out, `\`) {
			t.Fatalf("Terminal(%q) = %q did not escape visibly", in, out)
		}
	})
}
