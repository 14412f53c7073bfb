package dpop

import (
	"strings"
	"sync"
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
// is safe for concurrent use and bounded: when full, the origin used least
// recently is forgotten. The zero value is ready to use and holds
// DefaultNonceOrigins origins.
type NonceCache struct {
	mu    sync.Mutex
	limit int
	clock uint64
	m     map[string]nonceEntry
}

type nonceEntry struct {
	nonce string
	used  uint64
}

// NewNonceCache returns a cache of at most limit origins (at least one;
// DefaultNonceOrigins when limit is zero or less).
func NewNonceCache(limit int) *NonceCache {
	return &NonceCache{limit: limit}
}

// Get returns the nonce last set for origin, or "" if there is none.
// origin is compared exactly: use Origin to make it.
func (c *NonceCache) Get(origin string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[origin]
	if !ok {
		return ""
	}
	c.clock++
	e.used = c.clock
	c.m[origin] = e
	return e.nonce
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
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	if e, ok := c.m[origin]; ok {
		if e.nonce != nonce {
			// A copy, so that the cache never pins a larger buffer the
			// header value may share.
			e.nonce = strings.Clone(nonce)
		}
		e.used = c.clock
		c.m[origin] = e
		return
	}
	limit := c.limit
	if limit <= 0 {
		limit = DefaultNonceOrigins
	}
	if c.m == nil {
		c.m = make(map[string]nonceEntry, min(limit, 16))
	}
	if len(c.m) >= limit {
		c.evictLocked()
	}
	c.m[strings.Clone(origin)] = nonceEntry{nonce: strings.Clone(nonce), used: c.clock}
}

// Delete forgets origin's nonce (for example after the server rejected it
// without sending another).
func (c *NonceCache) Delete(origin string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, origin)
}

// Len returns how many origins the cache holds.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// evictLocked removes the least recently used origin. A linear scan: the
// cache is small and a new origin is rare next to the lookups.
func (c *NonceCache) evictLocked() {
	var oldest string
	var oldestUsed uint64
	first := true
	for o, e := range c.m {
		if first || e.used < oldestUsed {
			oldest, oldestUsed, first = o, e.used, false
		}
	}
	delete(c.m, oldest)
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
