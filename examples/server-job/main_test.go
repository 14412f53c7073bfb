package main

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
)

// TestServerJob runs 32 workers for a little over one token lifetime and
// checks that the job made exactly one token fetch per lifetime (the first,
// then one background refresh, never a duplicate), each refresh no earlier
// than the previous token's advisory point, and printed no secret.
func TestServerJob(t *testing.T) {
	const (
		lifetime = 6 * time.Second
		duration = 7 * time.Second
		// slack covers a fetch's own latency and scheduling, added to
		// the longest gap between fetches when bounding the count.
		slack = time.Second
	)
	// The token cache starts a background refresh at the advisory point,
	// expiry - m, where the early margin m is (1-AdvisoryFraction) of the
	// lifetime times a random factor in [1-Jitter, 1+Jitter] (75-85 % of
	// the lifetime with the defaults; the clamps of refresh's package
	// comment do not bind for a 6 s token). Consecutive fetches are
	// therefore between minGap and maxGap apart.
	early := (1 - refresh.DefaultAdvisoryFraction) * float64(lifetime)
	maxMargin := time.Duration(early * (1 + refresh.DefaultJitter))
	minGap := lifetime - maxMargin
	maxGap := lifetime - time.Duration(early*(1-refresh.DefaultJitter))
	// Fetch k (from 0) happens between k*minGap and k*(maxGap+slack) after
	// the start, and fetches stop when the job does.
	lo := 1 + int(duration/(maxGap+slack))
	hi := 1 + int(duration/minGap)
	if lo != hi {
		t.Fatalf("lifetime %s and duration %s allow %d to %d fetches: choose them so the count is exact", lifetime, duration, lo, hi)
	}

	secret := canary.New("secret")
	as := oauthtest.Start(t, oauthtest.Config{
		Clients:             []oauthtest.Client{{ID: "job", Secret: secret}},
		AccessTokenLifetime: lifetime,
	})
	api := oauthtest.StartAPI(t, as, "")
	t.Setenv("TOKENWARD_CLIENT_SECRET", secret)

	var mu sync.Mutex
	var fetched []client.Event // guarded by mu
	observe := func(cfg *client.Options) {
		show := cfg.Events // the job's own progress line
		cfg.Events = func(e client.Event) {
			if e.Kind == client.EventRefreshed {
				mu.Lock()
				fetched = append(fetched, e)
				mu.Unlock()
			}
			show(e)
		}
	}
	var out, errOut bytes.Buffer
	code := runWith(t.Context(), []string{"--issuer", as.Issuer(), "--client-id", "job", "--resource", api.Resource(),
		"--url", api.URL() + "/items", "--duration", duration.String(), "--allow-insecure-loopback"}, &out, &errOut, observe)
	all := out.String() + errOut.String()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, all)
	}

	mu.Lock()
	events := slices.Clone(fetched)
	mu.Unlock()
	fetches := as.Stats().Grants[oauthtest.GrantClientCredentials]
	if fetches != lo || len(events) != fetches {
		t.Fatalf("%d token fetches at the server, %d refresh events, in %s of %s tokens; want %d (one per lifetime)\n%s",
			fetches, len(events), duration, lifetime, lo, all)
	}
	for i, e := range events {
		if e.Background != (i > 0) {
			t.Errorf("fetch %d: background %v, want %v (only the first fetch may keep a caller waiting)", i, e.Background, i > 0)
		}
		if i == 0 {
			continue
		}
		prev := events[i-1]
		if earliest := prev.Expiry.Add(-maxMargin); e.Time.Before(earliest) {
			t.Errorf("fetch %d came %s after fetch %d, before that token's earliest refresh point (%s after it; about %s)",
				i, e.Time.Sub(prev.Time), i-1, earliest.Sub(prev.Time), minGap)
		}
	}
	if !strings.Contains(all, "token fetched (background: true)") || !strings.Contains(all, "0 failed") {
		t.Fatalf("output:\n%s", all)
	}
	if f := leakscan.Find(all, secret); len(f) > 0 {
		t.Fatalf("secrets printed: %v", f)
	}
}
