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
				as, err := oauthtest.New(oauthtest.Config{InMemory: true, Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
				if err != nil {
					t.Fatal(err)
				}
				defer as.Close()
				api, err := as.NewAPI("")
				if err != nil {
					t.Fatal(err)
				}
				other, err := as.NewAPI("https://other.example/")
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close()
				mem, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
				st := &countingSaves{Store: mem}
				var mu sync.Mutex
				var rejected []Event
				c, err := New(t.Context(), with(Options{
					Issuer: as.Issuer(), ClientID: "job", ClientSecret: "job-secret", Grant: GrantClientCredentials,
					Resources:  []string{other.Resource()}, // the wrong audience for api
					APIOrigins: []string{api.URL()}, AllowInsecureLoopback: true, Store: st,
					HTTP: HTTPSettings{Transport: as.Transport()},
					Events: func(e Event) {
						if e.Kind == EventTokenRejected {
							mu.Lock()
							rejected = append(rejected, e)
							mu.Unlock()
						}
					},
				}))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
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
