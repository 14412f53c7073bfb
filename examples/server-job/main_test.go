package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/fakeas"
	"github.com/tokenward/tokenward/internal/leakscan"
)

// TestServerJob runs 32 workers for a little over two token lifetimes and
// checks that the job made one token fetch per lifetime, all but the first
// in the background, and printed no secret.
func TestServerJob(t *testing.T) {
	as := fakeas.Start(t, fakeas.Config{
		Clients:             []fakeas.Client{{ID: "job", Secret: "job-secret-value"}},
		AccessTokenLifetime: 6 * time.Second,
	})
	api := fakeas.StartAPI(t, as, "")
	t.Setenv("TOKENWARD_CLIENT_SECRET", "job-secret-value")
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"--issuer", as.Issuer(), "--client-id", "job", "--resource", api.Resource(),
		"--url", api.URL() + "/items", "--duration", "7s", "--allow-insecure-loopback"}, &out, &errOut)
	all := out.String() + errOut.String()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, all)
	}
	fetches := as.Stats().Grants[fakeas.GrantClientCredentials]
	if fetches < 2 || fetches > 3 {
		t.Fatalf("%d token fetches in 7s of 6s tokens, want 2 (one per lifetime, the first plus one refresh)\n%s", fetches, all)
	}
	if !strings.Contains(all, "token fetched (background: true)") || !strings.Contains(all, "0 failed") {
		t.Fatalf("output:\n%s", all)
	}
	if f := leakscan.Find(all, "job-secret-value"); len(f) > 0 {
		t.Fatalf("secrets printed: %v", f)
	}
}
