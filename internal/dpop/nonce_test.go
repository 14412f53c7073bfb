package dpop

import (
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestNonceCacheGetSet(t *testing.T) {
	var c NonceCache // the zero value is ready
	if got := c.Get("https://as.example"); got != "" {
		t.Fatalf("empty cache Get = %q", got)
	}
	c.Set("https://as.example", "n-1")
	c.Set("https://rs.example", "r-1")
	c.Set("https://as.example", "n-2")
	if got := c.Get("https://as.example"); got != "n-2" {
		t.Errorf("Get = %q, want the latest nonce n-2", got)
	}
	if got := c.Get("https://rs.example"); got != "r-1" {
		t.Errorf("Get = %q, want r-1 (origins are separate)", got)
	}
	c.Delete("https://rs.example")
	if got := c.Get("https://rs.example"); got != "" || c.Len() != 1 {
		t.Errorf("after Delete: Get = %q, Len = %d", got, c.Len())
	}
}

// TestNonceCacheIgnoresBadNonces: what a server cannot make the cache keep.
func TestNonceCacheIgnoresBadNonces(t *testing.T) {
	c := NewNonceCache(0)
	c.Set("https://as.example", "good")
	for _, bad := range []string{"", "a b", `a"b`, `a\b`, "a\nb", "a\x00", "ü", "a\x7f", strings.Repeat("n", MaxNonceLen+1)} {
		c.Set("https://as.example", bad)
		if got := c.Get("https://as.example"); got != "good" {
			t.Errorf("Set(%q) replaced the nonce: Get = %q", bad, got)
		}
	}
	c.Set("", "x")
	c.Set(strings.Repeat("o", maxOriginLen+1), "x")
	if c.Len() != 1 {
		t.Errorf("Len = %d: an empty or overlong origin was kept", c.Len())
	}
	long := strings.Repeat("n", MaxNonceLen)
	c.Set("https://as.example", long)
	if c.Get("https://as.example") != long {
		t.Error("a nonce of MaxNonceLen bytes was refused")
	}
}

// TestNonceCacheEvictsLeastRecentlyUsed: the cache stays at its limit and
// forgets the origin used least recently.
func TestNonceCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewNonceCache(3)
	c.Set("a", "1")
	c.Set("b", "2")
	c.Set("c", "3")
	c.Get("a") // b is now the least recently used
	c.Set("d", "4")
	if c.Len() != 3 || c.Get("b") != "" || c.Get("a") != "1" || c.Get("c") != "3" || c.Get("d") != "4" {
		t.Fatalf("after eviction: len %d, a=%q b=%q c=%q d=%q", c.Len(), c.Get("a"), c.Get("b"), c.Get("c"), c.Get("d"))
	}
	// An origin read after another was added is the more recent one,
	// even when nothing was added in between.
	e := NewNonceCache(2)
	e.Set("hot", "h")
	e.Set("cold", "c")
	e.Get("hot")
	e.Get("hot")
	e.Set("new", "n")
	if e.Get("hot") != "h" || e.Get("cold") != "" || e.Get("new") != "n" {
		t.Fatalf("after eviction: hot=%q cold=%q new=%q; want the cold origin evicted", e.Get("hot"), e.Get("cold"), e.Get("new"))
	}
	var d NonceCache
	for i := range 3 * DefaultNonceOrigins {
		d.Set("https://h"+strconv.Itoa(i), "n")
	}
	if d.Len() != DefaultNonceOrigins {
		t.Fatalf("zero-value cache holds %d origins, want %d", d.Len(), DefaultNonceOrigins)
	}
	if d.Get("https://h"+strconv.Itoa(3*DefaultNonceOrigins-1)) != "n" {
		t.Error("the newest origin was evicted")
	}
}

// TestNonceCacheConcurrent: under -race, many goroutines may set and get at
// once, and a Get returns only a nonce some Set stored for that origin.
func TestNonceCacheConcurrent(t *testing.T) {
	c := NewNonceCache(8)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				origin := "https://h" + strconv.Itoa((g+i)%12)
				c.Set(origin, origin[len("https://"):]+"-"+strconv.Itoa(i))
				if got := c.Get(origin); got != "" && !strings.HasPrefix(got, origin[len("https://"):]+"-") {
					t.Errorf("Get(%s) = %q, a nonce of another origin", origin, got)
				}
				u := &url.URL{Scheme: "https", Host: origin[len("https://"):], Path: "/api"}
				if got := c.ForURL(u); got != "" && !strings.HasPrefix(got, u.Host+"-") {
					t.Errorf("ForURL(%s) = %q, a nonce of another origin", u, got)
				}
				if i%50 == 0 {
					c.Delete(origin)
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 8 {
		t.Errorf("Len = %d, over the limit 8", c.Len())
	}
}

// TestNonceCacheForURL: a lookup by parsed URL finds the nonce of the
// URL's origin however the URL spells it (case, default port, user
// information, path and query), and nothing for another origin.
func TestNonceCacheForURL(t *testing.T) {
	var c NonceCache
	c.Set("https://api.example", "n-api")
	c.Set("http://api.example:8080", "n-8080")
	for raw, want := range map[string]string{
		"https://api.example/v1?q=1":    "n-api",
		"https://API.Example:443/":      "n-api",
		"https://u:p@api.example/x":     "n-api",
		"https://api.example":           "n-api",
		"http://api.example:8080/a%2Fb": "n-8080",
		"http://api.example/":           "",
		"https://api.example:8443/":     "",
		"https://other.example/":        "",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ForURL(u); got != want {
			t.Errorf("ForURL(%s) = %q, want %q", raw, got, want)
		}
	}
	if got := c.ForURL(nil); got != "" {
		t.Errorf("ForURL(nil) = %q", got)
	}
	var empty NonceCache
	if got := empty.ForURL(&url.URL{Scheme: "https", Host: "api.example"}); got != "" {
		t.Errorf("empty cache: ForURL = %q", got)
	}
}

// BenchmarkNonceCacheForURL is the lookup every API request with a proof
// makes: no allocation, no lock.
func BenchmarkNonceCacheForURL(b *testing.B) {
	c := NewNonceCache(0)
	c.Set("https://api.example", "nonce-value")
	u, _ := url.Parse("https://api.example/v1/items?page=2")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.ForURL(u) == "" {
				b.Fatal("no nonce")
			}
		}
	})
}

func BenchmarkNonceCacheGet(b *testing.B) {
	c := NewNonceCache(0)
	c.Set("https://api.example", "nonce-value")
	b.ReportAllocs()
	for b.Loop() {
		c.Get("https://api.example")
	}
}
