//go:build linux

package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	dbus "github.com/godbus/dbus/v5"

	"github.com/tokenward/tokenward/internal/canary"
)

// secretServiceLabels returns the label of every Secret Service item of
// service, by user name, as Seahorse shows them.
func secretServiceLabels(t *testing.T, service string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := dbus.Connect(os.Getenv("DBUS_SESSION_BUS_ADDRESS"), dbus.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var paths []dbus.ObjectPath
	err = conn.Object(secretsName, keyringCollection(ctx, conn)).CallWithContext(ctx,
		"org.freedesktop.Secret.Collection.SearchItems", 0, map[string]string{"service": service}).Store(&paths)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		item := conn.Object(secretsName, p)
		label, err := item.GetProperty("org.freedesktop.Secret.Item.Label")
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := item.GetProperty("org.freedesktop.Secret.Item.Attributes")
		if err != nil {
			t.Fatal(err)
		}
		user := attrs.Value().(map[string]string)["username"]
		out[user] = label.Value().(string)
	}
	return out
}

// wantLabels returns the labels the items of the entry stored under name
// must carry, read from its manifest on the OS keychain.
func wantLabels(t *testing.T, service, name string) map[string]string {
	t.Helper()
	raw, err := osKeyring{}.Get(service, itemID(name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{itemID(name): itemLabel(name)}
	for i := range m.N {
		want[chunkUser(itemID(name), m.Gen, i)] = chunkLabel(itemLabel(name), i, m.N)
	}
	return want
}

// TestKeychainLabel on gnome-keyring: the label a person sees in Seahorse
// names the issuer's host, the client, the profile and the role of every
// item of an entry (manifest and chunks), and holds no secret: neither the
// entry's tokens nor one hidden in the issuer URL.
func TestKeychainLabel(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, osKeychain(nil))
	s, service := e.Store, e.service
	hidden := canary.New("issuer")
	names := []string{
		Key{Issuer: "https://user:" + hidden + "@login.example.com/tenant?k=" + hidden, ClientID: "my-cli",
			Profile: "alice@example.com", Scopes: []string{"openid", "email"}}.String(),
		Key{Issuer: "https://login.example.com", Role: "discovery"}.String(),
	}
	var secrets []string
	for i, name := range names {
		ent := canaryEntry()
		if i == 0 {
			ent = sizedEntry(5 << 10) // chunked
		}
		secrets = append(secrets, ent.RefreshToken, ent.IDToken, string(ent.KeyPair))
		if err := s.Save(ctx, name, ent); err != nil {
			t.Fatal(err)
		}
	}
	got := secretServiceLabels(t, service)
	want := wantLabels(t, service, names[0])
	for u, l := range wantLabels(t, service, names[1]) {
		want[u] = l
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("labels\n got %q\nwant %q", got, want)
	}
	if l := got[itemID(names[0])]; l != "tokenward: login.example.com, client my-cli, profile alice@example.com, scopes email openid" {
		t.Fatalf("label of a login's entry: %q", l)
	}
	if l := got[itemID(names[1])]; l != "tokenward: login.example.com, profile default, role discovery" {
		t.Fatalf("label of a discovery document: %q", l)
	}
	var all strings.Builder
	for _, l := range got {
		all.WriteString(l + "\n")
	}
	if found := canary.Find(all.String(), append(secrets, hidden)...); len(found) > 0 {
		t.Fatalf("labels leak secrets:\n%s", all.String())
	}
	for _, name := range names {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if left := secretServiceLabels(t, service); len(left) != 0 {
		t.Fatalf("items after Delete: %q", left)
	}
}

// TestKeychainLabelOldItems on gnome-keyring: an entry stored the way
// earlier versions stored it (same items, go-keyring's label naming only
// the hash) is read as it is, and the next write relabels its items; an
// older version still reads the relabelled entry.
func TestKeychainLabelOldItems(t *testing.T) {
	keychainSuite(t)
	t.Parallel()
	ctx := context.Background()
	// countingBackend hides osKeyring's labelling, as an older version had none.
	older := newEnv(t, osKeychain(&countingBackend{Backend: osKeyring{}}))
	service := older.service
	name := Key{Issuer: "https://login.example.com", ClientID: "my-cli", Profile: "bob"}.String()
	e1 := sizedEntry(4 << 10)
	if err := older.Save(ctx, name, e1); err != nil {
		t.Fatal(err)
	}
	for u, l := range secretServiceLabels(t, service) {
		if l != goKeyringLabel(service, u) {
			t.Fatalf("item %s stored without labels has label %q", u, l)
		}
	}
	s := older.reopen(t, func(o *Options) { o.Backend = nil })
	got, err := s.Load(ctx, name)
	if err != nil || !sameEntry(t, got, e1) {
		t.Fatalf("Load of an entry stored before labels = %v", err)
	}
	e2 := sizedEntry(6 << 10)
	if err := s.Save(ctx, name, e2); err != nil {
		t.Fatal(err)
	}
	if got, want := secretServiceLabels(t, service), wantLabels(t, service, name); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("labels after the next write\n got %q\nwant %q", got, want)
	}
	got, err = older.reopen(t).Load(ctx, name)
	if err != nil || !sameEntry(t, got, e2) {
		t.Fatalf("an older store's Load of a relabelled entry = %v", err)
	}
	if err := s.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
}
