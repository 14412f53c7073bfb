package client

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

func TestClientCredentialsCallsAPI(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := mustNew(t, e.confidential(t, "job", "s3cret-job", oauthtest.AuthClientSecretBasic))
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, body := get(t, hc, e.api.URL()+"/things"); code != 200 {
			t.Fatalf("API answered %d: %s", code, body)
		}
	}
	if n := e.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 1 {
		t.Fatalf("client_credentials requests = %d, want 1 for three calls", n)
	}
}

// failingStore fails the next n saves of one name, then works.
type failingStore struct {
	store.Store
	mu   sync.Mutex
	name string
	n    int
}

func (f *failingStore) Save(ctx context.Context, name string, e *store.Entry) error {
	f.mu.Lock()
	fail := name == f.name && f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("injected: %w", store.ErrTimeout)
	}
	return f.Store.Save(ctx, name, e)
}

// Minting a resource token rotates the login's refresh token; when saving
// it fails, the next mint (or refresh) uses the rotated one from memory,
// never the spent one in the store, and it reaches the store later.
func TestMintRotationSurvivesSaveFailure(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	fs := &failingStore{Store: e.store}
	cfg := e.config()
	cfg.Resources = []string{e.api.Resource(), apiB.Resource()}
	cfg.Store = fs
	c := mustNew(t, cfg)
	login(t, c)
	fs.mu.Lock()
	fs.name, fs.n = c.baseKey().String(), 8 // the saves and their reduced-set fallbacks
	fs.mu.Unlock()
	// The login's own refresh rotates first and cannot be saved: the live
	// refresh token is in the default cache's memory only.
	forceRefresh(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatalf("refresh with a failing store: %v", err)
	}
	rb, _ := c.ForResource(apiB.Resource())
	if _, err := rb.Token(t.Context()); err != nil {
		t.Fatalf("first mint: %v", err)
	}
	ra, _ := c.ForResource(e.api.Resource())
	if _, err := ra.Token(t.Context()); err != nil {
		t.Fatalf("second mint after a failed save: %v", err)
	}
	st := e.as.Stats()
	if st.RefreshTokensPresentedTwice != 0 || st.ReuseDetections != 0 {
		t.Fatalf("a spent refresh token was presented: %+v", st)
	}
	// The live refresh token reaches the store on a later access.
	if !eventuallyOK(func() bool {
		c.Token(t.Context())
		ent, err := e.store.Load(t.Context(), c.baseKey().String())
		if err != nil {
			return false
		}
		info, ok := e.as.Introspect(ent.RefreshToken)
		return ok && info.Active
	}) {
		t.Fatal("the rotated refresh token never reached the store")
	}
}
