package refresh

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// EventRefreshed says how many Token calls waited for the refresh: all of
// them on the first call, none for a refresh at the advisory point, and
// those that reached the mandatory window while a slow refresh ran.
func TestEventWaiters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		latency := 500 * time.Millisecond
		f := scene{life: 10 * time.Second, first: -time.Second,
			upstream: func(as *rotatingAS) Upstream {
				return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
					mu.Lock()
					d := latency
					mu.Unlock()
					time.Sleep(d)
					return as.Token(ctx, cur)
				})
			},
			options: func(o *Options) { o.Jitter, o.DisableIdleRefresh = -1, true },
		}.start(t)
		c, ev := f.c, f.ev
		// 0 s: five callers without a token wait for the first refresh
		// (0.5 s; the token lives until 10.5 s: advisory point 8.5 s,
		// mandatory window from 9.5 s).
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				if _, err := c.Token(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		// 8.6 s: past the advisory point; the refresh ends at 9.1 s, before
		// the mandatory window: nobody waits. The new token lives until
		// 19.1 s (advisory 17.1 s, mandatory 18.1 s).
		time.Sleep(8100 * time.Millisecond)
		c.Token(t.Context())
		time.Sleep(time.Second)
		// 17.2 s: a refresh that takes 2 s starts; at 18.2 s, inside the
		// mandatory window, a caller waits for it.
		mu.Lock()
		latency = 2 * time.Second
		mu.Unlock()
		time.Sleep(7600 * time.Millisecond)
		c.Token(t.Context())
		time.Sleep(time.Second)
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		var got []int
		for _, e := range ev.all() {
			if e.Kind == EventRefreshed {
				got = append(got, e.Waiters)
			}
		}
		if len(got) != 3 || got[0] != 5 || got[1] != 0 || got[2] != 1 {
			t.Fatalf("EventRefreshed waiters = %v, want [5 0 1]", got)
		}
	})
}
