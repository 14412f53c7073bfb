package leakscan

import (
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
)

func TestFind(t *testing.T) {
	t.Parallel()
	for i, s := range []string{canary.New("rt"), canary.JWT("at", 1), "x" + canary.JWT("at", 0)[4:], "pre " + canary.New("code") + " post"} {
		if len(Find(s)) == 0 {
			t.Errorf("case %d: secret not found", i)
		}
	}
	if f := Find("logged in as ada@example.com; 3 requests, all 200 OK"); len(f) != 0 {
		t.Fatalf("false positive: %v", f)
	}
	if f := Find("prefix exactsecret-abcdef suffix", "exactsecret-abcdef"); len(f) != 1 {
		t.Fatalf("exact secret: %v", f)
	}
}
