package redact

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Fields describes a value that holds secrets, for its String, GoString,
// Format and LogValue methods: its type name and the fields that are safe
// to show, in order. A secret field appears only as "[REDACTED]" (or not
// at all when it is empty). Fields of the value that are not added are
// never shown, so a field added to the type later stays hidden until
// someone decides it is safe.
//
// A type that holds a secret implements all four methods, because each
// reaches a different printer: String for %v and %s, GoString for %#v,
// Format for every other verb (a verb that does not fit makes fmt print
// the value's fields raw, "%!d(string=<the secret>)"), and LogValue for
// slog, whose JSON handler would otherwise marshal every exported field.
type Fields struct {
	typ   string
	attrs []slog.Attr
}

// Of starts the description of a value of type typ ("client.Options").
func Of(typ string) *Fields { return &Fields{typ: typ} }

// Show adds a field shown as it is. v must hold no secret: strings, string
// slices, numbers, booleans, times, durations, or values with their own
// redacting String method.
func (f *Fields) Show(name string, v any) *Fields {
	f.attrs = append(f.attrs, slog.Any(name, v))
	return f
}

// Secret adds a field that holds a secret: "[REDACTED]" when set, left out
// when not.
func (f *Fields) Secret(name string, set bool) *Fields {
	if set {
		f.attrs = append(f.attrs, slog.String(name, "["+Placeholder+"]"))
	}
	return f
}

// String renders the value as "typ{Name:value Name2:[REDACTED]}".
func (f *Fields) String() string {
	var b strings.Builder
	b.WriteString(f.typ)
	b.WriteByte('{')
	for i, a := range f.attrs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.Key)
		b.WriteByte(':')
		switch v := a.Value.Resolve(); v.Kind() {
		case slog.KindString:
			s := v.String()
			if strings.ContainsAny(s, " {}:") || s == "" {
				s = strconv.Quote(s)
			}
			b.WriteString(s)
		default:
			fmt.Fprint(&b, v.Any())
		}
	}
	b.WriteByte('}')
	return b.String()
}

// LogValue returns the shown fields as a slog group.
func (f *Fields) LogValue() slog.Value { return slog.GroupValue(f.attrs...) }

// Format writes s, a value's redacted description, for any verb: quoted
// for %q, as it is otherwise. It is the body of Format methods of types
// that hold secrets.
func Format(st fmt.State, verb rune, s string) {
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	st.Write([]byte(s))
}
