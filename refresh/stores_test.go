package refresh

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// The Persisters the tests use: memStore, a store in memory with a lock,
// and the variants built on it that fail in the ways real stores do.

// memStore is an in-memory Persister and Locker that copies tokens in and
// out (like a real store) and can fail saves.
type memStore struct {
	lock chan struct{}

	mu        sync.Mutex
	m         map[string]*oauth2.Token
	saves     int
	deletes   int
	failSaves int   // the next failSaves Saves fail
	saveErr   error // what they fail with
	ignore    bool  // Save reports success but stores nothing (the x/oauth2 way)
}

func newMemStore() *memStore {
	return &memStore{lock: make(chan struct{}, 1), m: map[string]*oauth2.Token{}}
}

var errDiskFull = errors.New("memstore: disk full")

func (s *memStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.m[key]
	if t == nil {
		return nil, nil
	}
	cp := *t
	return &cp, nil
}

func (s *memStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSaves > 0 {
		s.failSaves--
		if s.saveErr != nil {
			return s.saveErr
		}
		return errDiskFull
	}
	s.saves++
	if s.ignore {
		return nil
	}
	cp := *tok
	s.m[key] = &cp
	return nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	delete(s.m, key)
	return nil
}

func (s *memStore) Lock(ctx context.Context, key string) (func() error, error) {
	select {
	case s.lock <- struct{}{}:
		return func() error { <-s.lock; return nil }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *memStore) get(key string) *oauth2.Token {
	t, _ := s.Load(context.Background(), key)
	return t
}

func (s *memStore) put(key string, t *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *t
	s.m[key] = &cp
}

// setFailSaves makes the next n Saves fail.
func (s *memStore) setFailSaves(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSaves = n
}

var (
	errStoreRead = errors.New("faultstore: keychain did not reply")
	errTooLarge  = errors.New("faultstore: entry too large")
)

// faultStore is a memStore that can also fail loads, refuse large token
// sets (like store.MaxEntrySize or a keychain's item limit), and hang saves
// until their context ends.
type faultStore struct {
	*memStore

	fmu       sync.Mutex
	failLoads int  // the next failLoads Loads fail
	maxSize   int  // Save refuses sets whose access token + ID token exceed this (0: no limit)
	hang      bool // Save blocks until its context ends
	tooLarge  int  // saves refused as too large
}

// newFaultStore builds a faultStore on m.
func newFaultStore(m *memStore) *faultStore { return &faultStore{memStore: m} }

func (f *faultStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	f.fmu.Lock()
	if f.failLoads > 0 {
		f.failLoads--
		f.fmu.Unlock()
		return nil, errStoreRead
	}
	f.fmu.Unlock()
	return f.memStore.Load(ctx, key)
}

func (f *faultStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	f.fmu.Lock()
	hang, max := f.hang, f.maxSize
	if max > 0 && len(tok.AccessToken)+len(tokenx.IDToken(tok)) > max {
		f.tooLarge++
		f.fmu.Unlock()
		return errTooLarge
	}
	f.fmu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.memStore.Save(ctx, key, tok)
}

func (f *faultStore) set(fn func(f *faultStore)) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	fn(f)
}

// gatedSaveStore fails its first Save; later Saves wait for gate (a slow
// keychain).
type gatedSaveStore struct {
	*memStore
	gate chan struct{}

	mu sync.Mutex
	n  int
}

func (s *gatedSaveStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if n == 1 {
		return errDiskFull
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.memStore.Save(ctx, key, tok)
}

// ctxStore is a memStore whose Lock fails at once for an ended context.
type ctxStore struct{ *memStore }

func (s ctxStore) Lock(ctx context.Context, key string) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.memStore.Lock(ctx, key)
}

// failDeleteStore fails every Delete while fail is set.
type failDeleteStore struct {
	*memStore
	fail chan bool // buffered 1: the current setting
}

// newFailDeleteStore builds a failDeleteStore on m, failing.
func newFailDeleteStore(m *memStore) *failDeleteStore {
	s := &failDeleteStore{memStore: m, fail: make(chan bool, 1)}
	s.fail <- true
	return s
}

func (s *failDeleteStore) setFail(v bool) { <-s.fail; s.fail <- v }

func (s *failDeleteStore) Delete(ctx context.Context, key string) error {
	v := <-s.fail
	s.fail <- v
	if v {
		return errors.New("keychain locked")
	}
	return s.memStore.Delete(ctx, key)
}

// echoStore fails every Save with an error that echoes the token it was
// given, as a careless keychain backend might.
type echoStore struct{ *memStore }

func (e echoStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	return fmt.Errorf("keychain rejected item %q/%q", tok.AccessToken, tok.RefreshToken)
}

// holdStore is a memStore whose Saves, once armed, announce that they have
// started (entered) and then wait for release before storing: a slow
// keychain, to look at the cache while a save is under way.
type holdStore struct {
	*memStore
	entered chan struct{} // closed when the first held Save starts
	release chan struct{} // held Saves return after this is closed

	hmu   sync.Mutex
	armed bool
	held  int
	once  sync.Once
}

// newHoldStore builds a holdStore on m.
func newHoldStore(m *memStore) *holdStore {
	return &holdStore{memStore: m, entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *holdStore) arm() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.armed = true
}

func (s *holdStore) unblock() { s.once.Do(func() { close(s.release) }) }

// Save ignores ctx while held, as a hung keychain call does; the tests
// release it before anything could time out.
func (s *holdStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.hmu.Lock()
	armed := s.armed
	if armed {
		s.held++
		if s.held == 1 {
			close(s.entered)
		}
	}
	s.hmu.Unlock()
	if armed {
		<-s.release
	}
	return s.memStore.Save(ctx, key, tok)
}
