package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
)

// labelingBackend is a fake Secret Service whose items have labels, as
// go-keyring and gnome-keyring give them: every Set labels the item
// "Password for '<user>' on '<service>'" (go-keyring's CreateItem replaces
// the label along with the secret), and labelItems changes the labels of
// items that exist. It rejects a label no keychain would show well (not
// printable ASCII, or too long).
type labelingBackend struct {
	*fakekeychain.Fake
	mu     sync.Mutex
	labels map[string]string // by user name
	err    error             // returned by labelItems when set
	block  bool              // labelItems waits until its context ends
	calls  int               // labelItems calls
	bad    []string          // labels that were rejected
	seen   map[string]bool   // every label ever set, for canary scans
}

func newLabelingBackend(f *fakekeychain.Fake) *labelingBackend {
	return &labelingBackend{Fake: f, labels: map[string]string{}, seen: map[string]bool{}}
}

func goKeyringLabel(service, user string) string {
	return fmt.Sprintf("Password for '%s' on '%s'", user, service)
}

func (b *labelingBackend) Set(service, user, secret string) error {
	err := b.Fake.Set(service, user, secret)
	if err == nil {
		b.mu.Lock()
		b.labels[user] = goKeyringLabel(service, user)
		b.mu.Unlock()
	}
	return err
}

func (b *labelingBackend) Delete(service, user string) error {
	err := b.Fake.Delete(service, user)
	if err == nil {
		b.mu.Lock()
		delete(b.labels, user)
		b.mu.Unlock()
	}
	return err
}

func (b *labelingBackend) labelItems(ctx context.Context, service string, labels map[string]string) error {
	b.mu.Lock()
	b.calls++
	fail, block := b.err, b.block
	b.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail != nil {
		return fail
	}
	for user, l := range labels {
		b.mu.Lock()
		b.seen[l] = true
		if !printableASCII(l) || len(l) > maxLabel+len(" (part 999 of 999)") {
			b.bad = append(b.bad, l)
		} else if _, ok := b.labels[user]; ok { // items that exist only
			b.labels[user] = l
		}
		b.mu.Unlock()
	}
	return nil
}

// label returns the label of an item: the one set, or go-keyring's for an
// item written before labels existed.
func (b *labelingBackend) label(service, user string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.labels[user]; ok {
		return l
	}
	return goKeyringLabel(service, user)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestItemLabel: a Key's name shows the issuer's host, client, profile,
// scopes and role, sanitized and bounded; no other name shows itself.
func TestItemLabel(t *testing.T) {
	long := strings.Repeat("c", 100)
	tests := []struct {
		name string
		want string
	}{
		{Key{Issuer: "https://login.example.com/tenant/v2.0", ClientID: "my-cli", Profile: "alice@example.com", Scopes: []string{"openid", "email"}}.String(),
			"tokenward: login.example.com, client my-cli, profile alice@example.com, scopes email openid"},
		{Key{Issuer: "https://login.example.com", Role: "discovery"}.String(),
			"tokenward: login.example.com, profile default, role discovery"},
		{Key{Issuer: "https://idp.example:8443", ClientID: "a,b;c=d", Profile: "José\n", Role: "resource"}.String(),
			"tokenward: idp.example:8443, client a,b;c=d, profile Jos??, role resource"},
		{Key{Issuer: "not a url", ClientID: "c"}.String(), "tokenward: unknown issuer, client c, profile default"},
		{Key{Issuer: "https://x.example", ClientID: long}.String(),
			"tokenward: x.example, client " + long[:maxLabelPart-3] + "..., profile default"},
		{"../x", "tokenward: stored entry"},
		{"tokenward/v1;junk", "tokenward: stored entry"},
		{"tokenward/v1;iss=%zz;profile=a", "tokenward: stored entry"},
		{"alice's refresh token", "tokenward: stored entry"},
	}
	for _, tt := range tests {
		if got := itemLabel(tt.name); got != tt.want {
			t.Errorf("itemLabel(%q)\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

// TestItemLabelNoSecret: only the issuer's host is shown, never its user
// information, path or query, and resources are not shown at all, so a
// secret someone put there stays out of the label.
func TestItemLabelNoSecret(t *testing.T) {
	c := canary.New("label")
	k := Key{
		Issuer:   "https://user:" + c + "@idp.example/" + c + "?k=" + c + "#" + c,
		ClientID: "cli", Resource: []string{"https://api.example/?key=" + c},
	}
	got := itemLabel(k.String())
	if found := canary.Find(got, c); len(found) > 0 || got != "tokenward: idp.example, client cli, profile default" {
		t.Fatalf("label %q", got)
	}
}

// TestItemLabelBounded: whatever the fields hold, a label is printable
// ASCII of at most maxLabel bytes and starts with "tokenward: ".
func TestItemLabelBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	field := func() string {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	for range 2000 {
		k := Key{Issuer: "https://" + field(), ClientID: field(), Profile: field(), Role: field(),
			Scopes: []string{field(), field()}, Resource: []string{field()}}
		for _, name := range []string{k.String(), field()} {
			l := itemLabel(name)
			if !printableASCII(l) || len(l) > maxLabel || !strings.HasPrefix(l, "tokenward: ") {
				t.Fatalf("itemLabel(%q) = %q", name, l)
			}
		}
	}
}

// checkLabels checks that every item of service in lb has the label the
// entry stored under name gives it, and returns the labels.
func checkLabels(t *testing.T, lb *labelingBackend, name string) []string {
	t.Helper()
	m := keychainState(t, lb.Fake, name)
	if m == nil {
		t.Fatal("no entry")
	}
	want := map[string]string{itemID(name): itemLabel(name)}
	for i := range m.N {
		want[chunkUser(itemID(name), m.Gen, i)] = chunkLabel(itemLabel(name), i, m.N)
	}
	var all []string
	for _, u := range lb.Users(defaultService) {
		got := lb.label(defaultService, u)
		if got != want[u] {
			t.Fatalf("item %s: label %q, want %q", u, got, want[u])
		}
		all = append(all, got)
	}
	return all
}

// TestLabelEntryItems: after every Save, the manifest and every chunk of
// the entry carry a label naming the credential (go-keyring's own label,
// which names only the hash, is gone), and no label holds a secret.
func TestLabelEntryItems(t *testing.T) {
	ctx := context.Background()
	lb := newLabelingBackend(fakekeychain.NewSecretService())
	s := newEnv(t, onBackend(lb)).Store
	name := Key{Issuer: "https://login.example.com", ClientID: "my-cli", Profile: "alice", Scopes: []string{"openid"}}.String()
	var secrets []string
	for _, n := range []int{300, 5 << 10, 9 << 10, 2 << 10, 400} { // inline, chunked, more, fewer, inline
		ent := sizedEntry(n)
		for _, sec := range secretsOf(ent) {
			if len(sec) >= 16 { // the random access token of a small entry is a letter or two
				secrets = append(secrets, sec)
			}
		}
		if err := s.Save(ctx, name, ent); err != nil {
			t.Fatalf("%d: Save: %v", n, err)
		}
		labels := checkLabels(t, lb, name)
		if !strings.Contains(labels[0], "login.example.com, client my-cli, profile alice") {
			t.Fatalf("%d: labels %q", n, labels)
		}
		got, err := s.Load(ctx, name)
		if err != nil || !sameEntry(t, got, ent) {
			t.Fatalf("%d: Load = %v", n, err)
		}
	}
	if err := s.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if u := lb.Users(defaultService); len(u) != 0 {
		t.Fatalf("items after Delete: %q", u)
	}
	var seen strings.Builder
	for l := range lb.seen {
		seen.WriteString(l + "\n")
	}
	if found := canary.Find(seen.String(), secrets...); len(found) > 0 || len(lb.bad) > 0 {
		t.Fatalf("labels leak %q or were rejected %q:\n%s", found, lb.bad, seen.String())
	}
}

// TestLabelOldItems: the items an entry was stored in before labels
// existed (same user names, go-keyring's label) are read as they are; a
// Load and an unchanged Save write and relabel nothing; the next real
// write labels them; and a store without labels (an older version) reads
// what the newer one wrote.
func TestLabelOldItems(t *testing.T) {
	ctx := context.Background()
	fake := fakekeychain.NewSecretService()
	older := newEnv(t, onBackend(fake))
	name := Key{Issuer: "https://login.example.com", ClientID: "my-cli", Profile: "bob"}.String()
	e1 := sizedEntry(4 << 10)
	if err := older.Save(ctx, name, e1); err != nil {
		t.Fatal(err)
	}
	before := fake.Items()

	lb := newLabelingBackend(fake)
	s := newEnv(t, onBackend(lb), func(o *Options) { o.LockDir = older.lockDir }).Store
	got, err := s.Load(ctx, name)
	if err != nil || !sameEntry(t, got, e1) {
		t.Fatalf("Load of an item stored before labels = %v", err)
	}
	if err := s.Save(ctx, name, e1); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fake.Items()) != fmt.Sprint(before) || lb.calls != 0 {
		t.Fatalf("a Load and an unchanged Save changed items or labels (%d label calls)", lb.calls)
	}
	for _, u := range fake.Users(defaultService) {
		if l := lb.label(defaultService, u); l != goKeyringLabel(defaultService, u) {
			t.Fatalf("item %s relabelled without a write: %q", u, l)
		}
	}
	e2 := sizedEntry(6 << 10)
	if err := s.Save(ctx, name, e2); err != nil {
		t.Fatal(err)
	}
	checkLabels(t, lb, name)
	got, err = older.reopen(t).Load(ctx, name)
	if err != nil || !sameEntry(t, got, e2) {
		t.Fatalf("an older store's Load of a labelled entry = %v", err)
	}
}

// TestLabelFailureHarmless: a label that cannot be set, or whose call runs
// out of time, costs only the label: Save succeeds, the entry reads back,
// and the guard is not left hung, so the next call works at once.
func TestLabelFailureHarmless(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"error", "deadline"} {
		t.Run(mode, func(t *testing.T) {
			lb := newLabelingBackend(fakekeychain.NewSecretService())
			log, logs := newLogger()
			s := newEnv(t, onBackend(lb), func(o *Options) { o.Logger = log }).Store
			k := s.(*store).b.(*keychain)
			k.labelTimeout = 20 * time.Millisecond
			if mode == "error" {
				lb.err = errors.New("fake label failure")
			} else {
				lb.block = true
			}
			ent := sizedEntry(3 << 10)
			if err := s.Save(ctx, "k", ent); err != nil {
				t.Fatalf("Save: %v", err)
			}
			if k.g.isHung() {
				t.Fatal("the guard is hung after a label call ran out of time")
			}
			got, err := s.Load(ctx, "k")
			if err != nil || !sameEntry(t, got, ent) {
				t.Fatalf("Load = %v", err)
			}
			if lb.calls != 1 || !strings.Contains(logs.String(), "not relabelled") {
				t.Fatalf("%d label calls; log:\n%s", lb.calls, logs.String())
			}
		})
	}
}
