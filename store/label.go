package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Labels of keychain items.
//
// An item's identity is its user name, "tw1-" and a hash of the entry's
// name, and that never changes: a readable user name would have to be
// derived from the name too, so every item stored so far would move, and
// tokenward processes of an older version sharing the keychain would keep
// using the old item while a newer one used the new, each with its own
// copy of a rotating refresh token. What a person sees is decoration on
// top: where the keychain keeps a label apart from the item's identity,
// the store sets one that names the credential, and nothing ever reads it
// back to decide anything.
//
// Only the Secret Service (Linux and the BSDs) has such a label that can
// be changed without writing the secret again: the item's Label property,
// a D-Bus property of its own. go-keyring labels every item it writes
// "Password for '<user>' on '<service>'", so the store relabels an entry's
// items after each write. On macOS go-keyring stores items through
// `security add-generic-password`, whose label could only be changed by
// writing the item again with its secret, and on Windows Credential
// Manager shows the target name "<service>:<user>", which is the identity
// itself; there the items keep their hashed names.

// Bounds of a label: each part taken from the name, and the whole.
const (
	maxLabelPart = 64
	maxLabel     = 256
	// labelTimeout bounds the relabelling after a write. The entry is
	// saved by then, so running out of time costs only the label.
	labelTimeout = 2 * time.Second
)

// itemLabeler is implemented by backends whose items have a label a person
// sees apart from their identity (the OS keychain on the Secret Service).
// labels maps the user names of items of service to their new labels.
// Items that do not exist (any more) are skipped. The method is unexported
// on purpose: the Backend contract stays Get, Set and Delete.
type itemLabeler interface {
	labelItems(ctx context.Context, service string, labels map[string]string) error
}

// itemLabel returns the label of the items of the entry stored under name.
// A name made by [Key.String] shows the issuer's host, the client ID, the
// profile, the scopes and the role, such as
//
//	tokenward: login.example.com, client my-cli, profile alice@example.com, scopes email openid
//
// and any other name shows no part of itself (a name is not secret, but
// one that is not a Key's may say anything). Only the host of the issuer is
// shown, never its user information, path or query. Every part is
// printable ASCII (anything else becomes "?") and cut at maxLabelPart
// bytes, and the whole at maxLabel, so the label is valid UTF-8 that no
// keychain rejects.
func itemLabel(name string) string {
	const generic = "tokenward: stored entry"
	fields, ok := keyFields(name)
	if !ok {
		return generic
	}
	host := "unknown issuer"
	if u, err := url.Parse(fields["iss"]); err == nil && u.Host != "" {
		host = labelPart(u.Host)
	}
	parts := []string{"tokenward: " + host}
	if c := fields["client"]; c != "" {
		parts = append(parts, "client "+labelPart(c))
	}
	parts = append(parts, "profile "+labelPart(fields["profile"]))
	if s := fields["scope"]; s != "" {
		parts = append(parts, "scopes "+labelPart(strings.ReplaceAll(s, ",", " ")))
	}
	if r := fields["role"]; r != "" {
		parts = append(parts, "role "+labelPart(r))
	}
	return truncateLabel(strings.Join(parts, ", "), maxLabel)
}

// keyFields splits a name made by Key.String into its fields, unescaped
// (list fields keep their commas; an escaped comma inside a value becomes
// a plain one, which is good enough for reading). ok is false for any
// other name.
func keyFields(name string) (fields map[string]string, ok bool) {
	rest, found := strings.CutPrefix(name, "tokenward/v1;")
	if !found {
		return nil, false
	}
	fields = map[string]string{}
	for f := range strings.SplitSeq(rest, ";") {
		k, v, found := strings.Cut(f, "=")
		if !found {
			return nil, false
		}
		if k == "scope" || k == "resource" {
			// Unescape item by item, so that the separators stay commas.
			items := strings.Split(v, ",")
			for i, it := range items {
				u, err := url.PathUnescape(it)
				if err != nil {
					return nil, false
				}
				items[i] = u
			}
			fields[k] = strings.Join(items, ",")
			continue
		}
		u, err := url.PathUnescape(v)
		if err != nil {
			return nil, false
		}
		fields[k] = u
	}
	if _, ok := fields["iss"]; !ok {
		return nil, false
	}
	if _, ok := fields["profile"]; !ok {
		return nil, false
	}
	return fields, true
}

// labelPart returns s as printable ASCII (every other character, and every
// byte of invalid UTF-8, becomes "?"), cut at maxLabelPart bytes.
func labelPart(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return truncateLabel(b.String(), maxLabelPart)
}

// truncateLabel cuts the ASCII string s to at most n bytes, ending in "..."
// when it was cut.
func truncateLabel(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// chunkLabel is the label of chunk i of n of an entry labelled label.
func chunkLabel(label string, i, n int) string {
	return fmt.Sprintf("%s (part %d of %d)", label, i+1, n)
}

// labelEntry gives the items of the entry m describes (the manifest id and
// its chunks) the label a person sees, when the backend has labels. It
// runs after the entry is committed and verified, under the entry's write
// lock, and its failure is only logged: the label is decoration, and the
// saved entry is what counts. The backend call gets its own shorter
// deadline and returns by it, so the guard is never left hung by a label.
func (k *keychain) labelEntry(ctx context.Context, id string, m *manifest, label string) {
	lb, ok := k.be.(itemLabeler)
	if !ok || label == "" {
		return
	}
	labels := map[string]string{id: label}
	for i := range m.N {
		labels[chunkUser(id, m.Gen, i)] = chunkLabel(label, i, m.N)
	}
	timeout := k.labelTimeout
	if timeout <= 0 {
		timeout = labelTimeout
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := backendCall(ctx, k, func() (struct{}, error) {
		return struct{}{}, lb.labelItems(lctx, k.service, labels)
	})
	if err != nil {
		k.log.Debug("store: keychain items not relabelled", slog.String("item", id), slog.String("error", err.Error()))
	}
}
