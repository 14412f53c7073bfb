package store

import (
	"crypto/sha256"
	"encoding/base32"
	"slices"
	"strings"
	"unicode/utf8"
)

// Key identifies one credential: the tokens a client got from one issuer
// for one set of scopes and resources, under one profile. Two keys that
// differ in any field never share an entry: tokens granted for one scope
// set, resource or account are never handed out for another.
type Key struct {
	// Issuer is the authorization server's issuer identifier (or token URL).
	Issuer string
	// ClientID is the OAuth client identifier.
	ClientID string
	// Scopes are the requested scopes. Order and duplicates do not matter;
	// empty strings are ignored.
	Scopes []string
	// Resource lists RFC 8707 resource (or audience) indicators. Order and
	// duplicates do not matter; empty strings are ignored.
	Resource []string
	// Profile separates otherwise identical credentials, such as two user
	// accounts. "" means "default".
	Profile string
	// Role says what the entry holds within the credential: "" for the
	// token set a login or grant produced (the one with the refresh token),
	// or a name for tokens derived from it, such as "resource" for an access
	// token minted for one further RFC 8707 resource. Two keys that differ
	// only in Role never share an entry.
	Role string
}

// String returns the key's canonical name, the name to pass to
// [Store.Load], [Store.Save], [Store.Delete] and [Store.Lock]. It lists every
// field, sorts and de-duplicates the lists, and percent-escapes every byte
// outside a small safe set (including the separators ";", "=", "," and "%"),
// so two keys that differ in any field have different names and no field
// can imitate another. The name is readable, not secret, and never used
// as-is by a backend: stores hash it first.
func (k Key) String() string {
	profile := k.Profile
	if profile == "" {
		profile = "default"
	}
	var b strings.Builder
	b.WriteString("tokenward/v1")
	field := func(name, v string) {
		b.WriteString(";" + name + "=")
		escapeTo(&b, v)
	}
	list := func(name string, vs []string) {
		b.WriteString(";" + name + "=")
		for i, v := range canonicalList(vs) {
			if i > 0 {
				b.WriteByte(',')
			}
			escapeTo(&b, v)
		}
	}
	field("iss", k.Issuer)
	field("client", k.ClientID)
	list("scope", k.Scopes)
	list("resource", k.Resource)
	field("profile", profile)
	if k.Role != "" {
		// Only when set, so names of role-less keys stay as they were.
		field("role", k.Role)
	}
	return b.String()
}

// canonicalList returns vs sorted, without duplicates or empty strings.
func canonicalList(vs []string) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// escapeTo writes v with every byte outside [A-Za-z0-9-._~:/@+!*()] written
// as %XX.
func escapeTo(b *strings.Builder, v string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:/@+!*()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// maxNameLen bounds entry names.
const maxNameLen = 4096

// itemID returns the identifier under which an entry name is stored: "tw1-"
// plus the unpadded lower-case base32 of a domain-separated SHA-256 of the
// name (56 characters of [a-z2-7-]). Every backend and file path sees only
// this, so no name can be misread by a backend's quoting (macOS security
// drops backslashes), collide on a separator (Windows joins service and
// user with ":" into one target name) or traverse a path ("../"); the name
// itself travels inside the entry and is checked on load.
func itemID(name string) string {
	sum := sha256.Sum256([]byte("tokenward/store/name/v1\x00" + name))
	return "tw1-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// checkName validates an entry name and returns its item identifier.
func checkName(name string) (string, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return "", fail(ErrInvalidKey, "", nil)
	}
	return itemID(name), nil
}
