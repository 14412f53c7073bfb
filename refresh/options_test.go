package refresh

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Options are clamped once.
func TestOptionsResolve(t *testing.T) {
	t.Parallel()
	o := Options{AdvisoryFraction: 2, Jitter: -1, DefaultLifetime: time.Nanosecond, MaxLifetime: 100 * 365 * 24 * time.Hour,
		RetryBackoffMin: time.Minute, RetryBackoffMax: time.Second, RefreshTimeout: -5, RotationGrace: -time.Second}.resolve()
	if o.AdvisoryFraction != 0.95 || o.Jitter != 0 || o.DefaultLifetime != time.Second || o.MaxLifetime != 365*24*time.Hour ||
		o.RetryBackoffMax != time.Minute || o.RefreshTimeout != DefaultRefreshTimeout || o.RotationGrace != 0 || o.Logger == nil {
		t.Fatalf("resolved %+v", o)
	}
	d := Options{}.resolve()
	if d.DefaultLifetime != time.Hour || d.MandatoryWindow != 10*time.Second || d.MaxAdvisoryMargin != 5*time.Minute || d.Jitter != 0.25 ||
		d.LockTimeout != 60*time.Second || d.RefreshTimeout != 30*time.Second || d.MaxRetryAfter != 5*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	// MaxRetryAfter: negative ignores the server's delay, and a cap above
	// an hour is cut to one.
	for set, want := range map[time.Duration]time.Duration{-time.Second: 0, 2 * time.Minute: 2 * time.Minute, 48 * time.Hour: time.Hour} {
		if got := (Options{MaxRetryAfter: set}).resolve().MaxRetryAfter; got != want {
			t.Fatalf("MaxRetryAfter %v resolved to %v, want %v", set, got, want)
		}
	}
}

// uncomparableStore is a Persister whose values cannot be compared (a
// struct with a func field): New cannot tell two of them apart.
type uncomparableStore struct {
	*memStore
	hook func()
}

// A later New for an open key must ask for the same settings: one that
// differs fails with ErrInvalidConfig naming it, and leaves the open cache
// as it was. The Upstream, Logger and OnEvent are a handle's own and never
// conflict, values that resolve alike do not either, and a Persister whose
// type cannot be compared is not counted.
func TestNewConflictingOptions(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	up := UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "a", Expiry: time.Now().Add(time.Hour)}, nil
	})
	base := func(o *Options) {
		o.Persister = st
		o.MaxLifetime = 2 * time.Hour
		o.RotationGrace = 10 * time.Second
		o.AdvisoryFraction = 0.95
	}
	key := testKey(t)
	c, err := New(key, up, base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name string
		set  func(o *Options)
	}{
		{"DefaultLifetime", func(o *Options) { o.DefaultLifetime = time.Minute }},
		{"MaxLifetime", func(o *Options) { o.MaxLifetime = time.Hour }},
		{"AdvisoryFraction", func(o *Options) { o.AdvisoryFraction = 0.6 }},
		{"Jitter", func(o *Options) { o.Jitter = -1 }},
		{"MaxAdvisoryMargin", func(o *Options) { o.MaxAdvisoryMargin = time.Minute }},
		{"MandatoryWindow", func(o *Options) { o.MandatoryWindow = time.Second }},
		{"RefreshTimeout", func(o *Options) { o.RefreshTimeout = time.Second }},
		{"LockTimeout", func(o *Options) { o.LockTimeout = time.Second }},
		{"RetryBackoffMin", func(o *Options) { o.RetryBackoffMin = 2 * time.Second }},
		{"RetryBackoffMax", func(o *Options) { o.RetryBackoffMax = time.Minute }},
		{"MaxRetryAfter", func(o *Options) { o.MaxRetryAfter = time.Minute }},
		{"RotationGrace", func(o *Options) { o.RotationGrace = 0 }},
		{"RefreshTokenLead", func(o *Options) { o.RefreshTokenLead = -1 }},
		{"DisableIdleRefresh", func(o *Options) { o.DisableIdleRefresh = true }},
		{"Persister", func(o *Options) { o.Persister = newMemStore() }},
		{"Persister", func(o *Options) { o.Persister = nil }},
	} {
		c2, err := New(key, up, base, tc.set)
		if err == nil {
			c2.Close()
			t.Fatalf("%s: a second New with another %s shares the cache", tc.name, tc.name)
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "refresh: ") || !strings.Contains(err.Error(), tc.name) {
			t.Fatalf("%s: New = %v; want ErrInvalidConfig naming %s", tc.name, err, tc.name)
		}
	}
	if c.c.refs != 1 {
		t.Fatalf("refs = %d after refused News, want 1", c.c.refs)
	}

	// Not conflicts: a handle's own Upstream, Logger and OnEvent, and
	// values that resolve to the open cache's (the zero value and the
	// default; a clamped value and its clamp).
	other := UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return nil, errors.New("not called") })
	same, err := New(key, other, base, func(o *Options) {
		o.Logger = slog.New(slog.DiscardHandler)
		o.OnEvent = func(Event) {}
		o.Jitter = DefaultJitter
		o.AdvisoryFraction = 0.99 // clamped to 0.95
	})
	if err != nil {
		t.Fatalf("New with only a handle's own settings: %v", err)
	}
	defer same.Close()
	if same.c != c.c {
		t.Fatal("two handles of one key hold two caches")
	}

	// A Persister that cannot be compared is not counted.
	ukey := testKey(t)
	u1, err := New(ukey, up, func(o *Options) { o.Persister = uncomparableStore{newMemStore(), func() {}} })
	if err != nil {
		t.Fatal(err)
	}
	defer u1.Close()
	u2, err := New(ukey, up, func(o *Options) { o.Persister = uncomparableStore{newMemStore(), func() {}} })
	if err != nil {
		t.Fatalf("New with an uncomparable Persister: %v", err)
	}
	defer u2.Close()
	if u1.c != u2.c {
		t.Fatal("two handles of one key hold two caches")
	}
}
