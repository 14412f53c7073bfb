package main

import (
	"testing"

	ss "github.com/zalando/go-keyring/secret_service"
)

// keychainItems counts the Secret Service items of service, as go-keyring
// files them (attribute "service").
func keychainItems(t *testing.T, service string) int {
	t.Helper()
	svc, err := ss.NewSecretService()
	if err != nil {
		t.Fatalf("secret service: %v", err)
	}
	coll := svc.GetLoginCollection()
	items, err := svc.SearchItems(coll, map[string]string{"service": service})
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	return len(items)
}
