package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Two Clients of one credential must share a store, and both see events.
func TestSecondClientSameCredential(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	var n1, n2 atomic.Int32
	cfg := e.config()
	cfg.Events = func(ev Event) {
		if ev.Kind == EventRefreshed {
			n1.Add(1)
		}
	}
	c1 := mustNew(t, cfg)
	login(t, c1)
	other, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	cfg2 := e.config()
	cfg2.Store = other
	if _, err := New(t.Context(), with(cfg2)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a second Client with another store = %v, want ErrInvalidConfig", err)
	}
	cfg3 := e.config()
	cfg3.Events = func(ev Event) {
		if ev.Kind == EventRefreshed {
			n2.Add(1)
		}
	}
	c2 := mustNew(t, cfg3)
	forceRefresh(t, c2)
	if _, err := c2.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n1.Load() != 1 || n2.Load() != 1 {
		t.Fatalf("refresh events seen: first Client %d, second %d; want 1 and 1", n1.Load(), n2.Load())
	}
}

// countingSaves counts the saves of a store.
type countingSaves struct {
	store.Store
	saves atomic.Int64
}

func (s *countingSaves) Save(ctx context.Context, name string, e *store.Entry) error {
	s.saves.Add(1)
	return s.Store.Save(ctx, name, e)
}

// An API that rejects every token (here: the client asks for tokens for
// another resource than the API's, a classic misconfiguration) must not
// drive the token endpoint: token requests and store writes grow with the
// logarithm of the requests, not one per request, and the application
// hears why through EventTokenRejected with ErrTokenRejected.
func TestRejectingAPIDoesNotDriveTokenEndpoint(t *testing.T) {
	t.Parallel()
	for _, n := range []int{30, 1000} {
		t.Run(fmt.Sprintf("%d requests", n), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}}, inMemory())
				as, api := e.as, e.api
				other, err := as.NewAPI("https://other.example/")
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close()
				st := &countingSaves{Store: e.store}
				var mu sync.Mutex
				var rejected []Event
				c := e.client(t, clientCredentials("job", "job-secret"), func(o *Options) {
					o.Scopes, o.Logger = nil, nil
					o.Resources = []string{other.Resource()} // the wrong audience for api
					o.APIOrigins = []string{api.URL()}
					o.Store = st
					o.Events = func(e Event) {
						if e.Kind == EventTokenRejected {
							mu.Lock()
							rejected = append(rejected, e)
							mu.Unlock()
						}
					}
				})
				hc, err := c.HTTPClient(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					resp, err := hc.Get(api.URL() + "/things")
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("request %d: %s, want 401", i, resp.Status)
					}
					time.Sleep(10 * time.Millisecond)
				}
				fetches := as.Stats().Grants[oauthtest.GrantClientCredentials]
				bound := 2 + int(math.Log2(float64(n)))
				t.Logf("%d requests rejected: %d token requests (bound %d), %d saves, %d EventTokenRejected",
					n, fetches, bound, st.saves.Load(), len(rejected))
				if fetches > bound {
					t.Fatalf("%d rejected requests caused %d token requests, want at most %d", n, fetches, bound)
				}
				if saves := st.saves.Load(); saves > int64(bound) {
					t.Fatalf("%d rejected requests caused %d store writes, want at most %d", n, saves, bound)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(rejected) == 0 {
					t.Fatal("no EventTokenRejected")
				}
				if err := rejected[0].Err; !errors.Is(err, ErrTokenRejected) {
					t.Fatalf("EventTokenRejected.Err = %v, want ErrTokenRejected", err)
				}
			})
		})
	}
}
