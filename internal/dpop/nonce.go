package dpop

import (
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Limits of a NonceCache.
const (
	// DefaultNonceOrigins is how many origins a NonceCache remembers
	// unless NewNonceCache says otherwise.
	DefaultNonceOrigins = 256
	// MaxNonceLen is the longest nonce kept. RFC 9449 sets no limit; real
	// servers send a few dozen bytes, and a bound keeps a hostile server
	// from making every later proof (and the cache) large.
	MaxNonceLen = 512
	// maxOriginLen bounds a cache key for the same reason.
	maxOriginLen = 1024
)

// NonceCache remembers the last DPoP-Nonce each origin sent (RFC 9449
// section 8 and 9), so that the next proof to that origin carries it. It
// is safe for concurrent use and bounded: when full, an origin used least
// recently is forgotten. The zero value is ready to use and holds
// DefaultNonceOrigins origins.
//
// Every API request with a proof reads the cache, so a read takes no lock
// and writes nothing shared in the usual case: the origins live in a map
// that is replaced (copied) only when an origin is added or removed, and
// each origin's nonce sits in its own slot that a new nonce from the
// server updates in place. Recency is a counter that moves only when use
// passes from one origin to another: each slot keeps the counter's value
// of its last use, a use of the origin used last writes nothing, and the
// origin with the smallest value goes first.
type NonceCache struct {
	mu    sync.Mutex // serialises changes to the set of origins
	limit int
	m     atomic.Pointer[map[string]*nonceSlot] // never modified once published
	clock atomic.Uint64                         // the recency counter
}

type nonceSlot struct {
	nonce atomic.Pointer[string]
	used  atomic.Uint64 // the clock's value at the origin's last use
}

// touch marks s as the origin used last. When it already is, nothing is
// written, so that the readers of a busy origin do not fight over a cache
// line.
func (c *NonceCache) touch(s *nonceSlot) {
	if s.used.Load() != c.clock.Load() {
		s.used.Store(c.clock.Add(1))
	}
}

// NewNonceCache returns a cache of at most limit origins (at least one;
// DefaultNonceOrigins when limit is zero or less).
func NewNonceCache(limit int) *NonceCache {
	return &NonceCache{limit: limit}
}

// Get returns the nonce last set for origin, or "" if there is none.
// origin is compared exactly: use Origin to make it.
func (c *NonceCache) Get(origin string) string {
	return c.get(c.slot(origin))
}

// ForURL returns the nonce last set for u's origin, as Get(Origin(u)) but
// without printing u for the usual URL; "" if there is none or u is not a
// URL a proof can name.
func (c *NonceCache) ForURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if t, ok := fastTarget(u); ok {
		// The key is built on the stack: a map index by string(bytes)
		// does not allocate.
		var buf [128]byte
		key := append(append(append(buf[:0], t.scheme...), "://"...), t.host...)
		m := c.m.Load()
		if m == nil {
			return ""
		}
		return c.get((*m)[string(key)])
	}
	origin, err := Origin(u.String())
	if err != nil {
		return ""
	}
	return c.Get(origin)
}

func (c *NonceCache) slot(origin string) *nonceSlot {
	m := c.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[origin]
}

func (c *NonceCache) get(s *nonceSlot) string {
	if s == nil {
		return ""
	}
	c.touch(s)
	return *s.nonce.Load()
}

// Set records nonce as origin's current nonce. A nonce that is empty,
// longer than MaxNonceLen or not made of the characters RFC 9449 section 8
// allows (printable ASCII but '"' and '\\') is ignored, as is an empty or
// overlong origin: a server cannot use the cache to inject text into
// proofs or grow it without bound.
func (c *NonceCache) Set(origin, nonce string) {
	if origin == "" || len(origin) > maxOriginLen || !isNonce(nonce) {
		return
	}
	if c.update(c.slot(origin), nonce) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && c.update((*old)[origin], nonce) {
		return // added by another Set meanwhile
	}
	limit := c.limit
	if limit <= 0 {
		limit = DefaultNonceOrigins
	}
	next := make(map[string]*nonceSlot, min(limit, c.size(old)+1))
	if old != nil {
		for o, s := range *old {
			next[o] = s
		}
	}
	if len(next) >= limit {
		evict(next)
	}
	s := &nonceSlot{}
	// Copies, so that the cache never pins a larger buffer the header
	// value may share.
	n := strings.Clone(nonce)
	s.nonce.Store(&n)
	s.used.Store(c.clock.Add(1))
	next[strings.Clone(origin)] = s
	c.m.Store(&next)
}

// update sets the nonce of an existing slot and reports whether there was
// one.
func (c *NonceCache) update(s *nonceSlot, nonce string) bool {
	if s == nil {
		return false
	}
	if *s.nonce.Load() != nonce {
		n := strings.Clone(nonce)
		s.nonce.Store(&n)
	}
	c.touch(s)
	return true
}

func (c *NonceCache) size(m *map[string]*nonceSlot) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// Delete forgets origin's nonce (for example after the server rejected it
// without sending another).
func (c *NonceCache) Delete(origin string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[origin]; !ok {
		return
	}
	next := make(map[string]*nonceSlot, len(*old)-1)
	for o, s := range *old {
		if o != origin {
			next[o] = s
		}
	}
	c.m.Store(&next)
}

// Len returns how many origins the cache holds.
func (c *NonceCache) Len() int { return c.size(c.m.Load()) }

// evict removes the origin used least recently from m. A linear scan: the
// cache is small and a new origin is rare next to the lookups.
func evict(m map[string]*nonceSlot) {
	var oldest string
	var oldestUsed uint64
	first := true
	for o, s := range m {
		if u := s.used.Load(); first || u < oldestUsed {
			oldest, oldestUsed, first = o, u, false
		}
	}
	delete(m, oldest)
}

// isNonce reports whether s is a nonce RFC 9449 section 8 allows,
// 1*NQCHAR where NQCHAR is %x21 / %x23-5B / %x5D-7E, and at most
// MaxNonceLen bytes long.
func isNonce(s string) bool {
	if s == "" || len(s) > MaxNonceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
