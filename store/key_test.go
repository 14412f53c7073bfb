package store

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestKeyStringCanonical(t *testing.T) {
	t.Parallel()
	base := Key{Issuer: "https://as.example.com", ClientID: "cli", Scopes: []string{"write", "read"}, Resource: []string{"https://api.example.com"}}
	tests := []struct {
		name string
		k    Key
	}{
		{"scope order", Key{Issuer: base.Issuer, ClientID: "cli", Scopes: []string{"read", "write"}, Resource: base.Resource}},
		{"scope duplicates and empties", Key{Issuer: base.Issuer, ClientID: "cli", Scopes: []string{"read", "", "write", "read"}, Resource: base.Resource}},
		{"default profile", Key{Issuer: base.Issuer, ClientID: "cli", Scopes: base.Scopes, Resource: base.Resource, Profile: "default"}},
	}
	for _, tt := range tests {
		if got, want := tt.k.String(), base.String(); got != want {
			t.Errorf("%s: %q != %q", tt.name, got, want)
		}
	}
	const want = "tokenward/v1;iss=https://as.example.com;client=cli;scope=read,write;resource=https://api.example.com;profile=default"
	if got := base.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestKeyStringDistinct: keys differing in any one field, including values
// built to imitate separators, never share a name, so that tokens of one
// credential are never loaded for another.
func TestKeyStringDistinct(t *testing.T) {
	t.Parallel()
	keys := []Key{
		{},
		{Issuer: "https://a"},
		{Issuer: "https://a", ClientID: "c"},
		{Issuer: "https://a;client=c"},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s"}},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s,t"}},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s", "t"}},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s t"}},
		{Issuer: "https://a", ClientID: "c", Resource: []string{"s"}},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s"}, Resource: []string{"r"}},
		{Issuer: "https://a", ClientID: "c", Scopes: []string{"s"}, Resource: []string{"r"}, Profile: "work"},
		{Issuer: "https://a", ClientID: "c;scope=s"},
		{Issuer: "https://a", ClientID: "c%3Bscope=s"},
		{Issuer: "https://a", ClientID: "c", Profile: "default;x"},
		{Issuer: "https://a", ClientID: "c", Profile: "é"},
		{Issuer: "https://a", ClientID: "c", Profile: "e\u0301"},
		{Issuer: "https://a", ClientID: "c", Profile: "../x"},
		{Issuer: "https://a", ClientID: "c", Profile: "a\nb"},
		{Issuer: "https://a", ClientID: "c", Profile: "%"},
		{Issuer: "https://a/", ClientID: "c"},
		{Issuer: "https://A", ClientID: "c"},
		{Issuer: "https://a", ClientID: "c", Resource: []string{"r"}, Role: "resource"},
		{Issuer: "https://a", ClientID: "c", Resource: []string{"r"}, Profile: "default;role=resource"},
		{Issuer: "https://a", ClientID: "c", Resource: []string{"r"}, Role: "resource;x"},
	}
	seen := map[string]int{}
	for i, k := range keys {
		s := k.String()
		if j, ok := seen[s]; ok {
			t.Errorf("keys %d and %d share the name %q", j, i, s)
		}
		seen[s] = i
		if strings.ContainsAny(s, " \n\"'\\") {
			t.Errorf("name %q has unescaped characters", s)
		}
	}
}

func TestItemID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^tw1-[a-z2-7]{52}$`)
	names := []string{"a", "A", `\`, "'", `"`, ":", " ", "\n", "é", "../", "../../x", "tw1-x", strings.Repeat("z", maxNameLen)}
	seen := map[string]string{}
	for _, n := range names {
		id := itemID(n)
		if !re.MatchString(id) {
			t.Errorf("itemID(%q) = %q, not [a-z2-7]", n, id)
		}
		if o, ok := seen[id]; ok {
			t.Errorf("%q and %q share item %s", o, n, id)
		}
		seen[id] = n
	}
	for _, bad := range []string{"", "\xff", strings.Repeat("z", maxNameLen+1)} {
		if _, err := checkName(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("checkName(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
