package redact

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Terminal makes text that came from somewhere else (a server's
// user_code, verification URI or error_description, a subject from an ID
// token) safe to print on a terminal. Everything a terminal could take as
// an instruction, rather than as a character to show, is replaced by a
// visible escape, so the user sees that something odd was there instead of
// having it silently run or vanish:
//
//   - C0 controls (ESC, CR, LF, TAB, BEL, backspace, NUL ...) and DEL: \x1b;
//   - C1 controls U+0080 to U+009F (the 8-bit CSI U+009B, OSC U+009D ...):
//     \u009b;
//   - Unicode format characters (category Cf: the bidi embeddings,
//     overrides, isolates and marks U+202A-U+202E, U+2066-U+2069, U+200E,
//     U+200F, U+061C, zero-width characters, the byte order mark) and the
//     line and paragraph separators U+2028 and U+2029: \u202e;
//   - bytes that are not valid UTF-8 (a raw 0x9b, which some terminals
//     take for an 8-bit CSI, included): \x9b.
//
// The result is valid UTF-8 with no byte below 0x20, no DEL, no C1
// control and no format character, so an escape sequence (CSI, OSC, an
// OSC 8 hyperlink) can neither start nor end inside it. Text without such
// characters is returned unchanged. A backslash is not escaped: the
// escapes are for a person to read, not to be decoded.
//
// Terminal removes no secret: use [String] or [Truncate] for that first.
func Terminal(s string) string {
	i := firstUnsafe(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafeRune(r):
			b.WriteString(s[i : i+size])
		case r < utf8.RuneSelf:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// firstUnsafe returns the index of the first byte of s that Terminal must
// escape, or -1 when there is none.
func firstUnsafe(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++ // printable ASCII, the common case
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			return i
		}
		i += size
	}
	return -1
}

// unsafeRune reports whether a terminal may act on r instead of showing it:
// the control characters (C0, DEL, C1), the format characters (bidi
// controls, zero-width characters) and the line and paragraph separators.
func unsafeRune(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}
