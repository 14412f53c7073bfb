package store_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenward/tokenward/store"
)

// Open a store, save an entry under a Key's name, and load it back. The
// example uses memory mode so it runs anywhere; applications leave Mode
// empty to get the OS keychain.
func ExampleOpen() {
	ctx := context.Background()
	st, err := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		fmt.Println(err)
		return
	}
	name := store.Key{Issuer: "https://as.example.com", ClientID: "cli", Scopes: []string{"read"}}.String()

	err = st.Save(ctx, name, &store.Entry{
		AccessToken:  "example-access-token",
		TokenType:    "Bearer",
		RefreshToken: "example-refresh-token",
		Expiry:       time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := st.Load(ctx, name)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Never print the tokens themselves.
	fmt.Println(e.TokenType, e.Expiry.Format(time.RFC3339), e.RefreshToken != "")
	fmt.Println(st.Status())
	// Output:
	// Bearer 2030-01-02T03:04:05Z true
	// memory: process memory, not encrypted, not persisted
}

// Key.String is the canonical name of a credential: lists are sorted and
// de-duplicated, the empty profile is "default", and separators inside
// values are escaped, so two different keys never share a name.
func ExampleKey_String() {
	a := store.Key{Issuer: "https://as.example.com", ClientID: "cli", Scopes: []string{"write", "read", "read"}}
	b := store.Key{Issuer: "https://as.example.com", ClientID: "cli", Scopes: []string{"read", "write"}, Profile: "default"}
	c := store.Key{Issuer: "https://as.example.com", ClientID: "cli;scope=read", Scopes: []string{"write"}}
	fmt.Println(a.String())
	fmt.Println(a.String() == b.String())
	fmt.Println(c.String())
	// Output:
	// tokenward/v1;iss=https://as.example.com;client=cli;scope=read,write;resource=;profile=default
	// true
	// tokenward/v1;iss=https://as.example.com;client=cli%3Bscope%3Dread;scope=write;resource=;profile=default
}

// Errors are branched on with errors.Is.
func ExampleStore_Load_notFound() {
	ctx := context.Background()
	st, err := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = st.Load(ctx, store.Key{Issuer: "https://as.example.com", ClientID: "cli"}.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Println("not signed in yet")
	case errors.Is(err, store.ErrLocked), errors.Is(err, store.ErrTimeout):
		fmt.Println("unlock the keychain and retry")
	case err != nil:
		fmt.Println("store failed:", err)
	}
	// Output:
	// not signed in yet
}

// Lock serialises a refresh across goroutines and processes: lock, reload
// (another process may have refreshed already), refresh, save, unlock.
func ExampleStore_Lock() {
	ctx := context.Background()
	st, err := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		fmt.Println(err)
		return
	}
	name := store.Key{Issuer: "https://as.example.com", ClientID: "cli"}.String()
	unlock, err := st.Lock(ctx, name)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer unlock()
	if _, err := st.Load(ctx, name); errors.Is(err, store.ErrNotFound) {
		err = st.Save(ctx, name, &store.Entry{AccessToken: "fresh", TokenType: "Bearer"})
		fmt.Println("saved:", err == nil)
	}
	// Output:
	// saved: true
}
