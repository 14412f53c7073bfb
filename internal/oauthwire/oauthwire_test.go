package oauthwire

import (
	"net/http"
	"testing"
	"time"
)

func TestServerTimeAndSkew(t *testing.T) {
	t.Parallel()
	local := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{"Date": {local.Add(10 * time.Minute).Format(http.TimeFormat)}}
	st, ok := ServerTime(h)
	if !ok || !st.Equal(local.Add(10*time.Minute)) {
		t.Fatalf("ServerTime = %v %v", st, ok)
	}
	skew, ok := ClockSkew(h, local, local.Add(200*time.Millisecond))
	if !ok || skew < 10*time.Minute-time.Second || skew > 10*time.Minute+time.Second {
		t.Fatalf("ClockSkew = %v %v", skew, ok)
	}
	if _, ok := ServerTime(http.Header{"Date": {"yesterday"}}); ok {
		t.Error("bad Date accepted")
	}
	if _, ok := ClockSkew(http.Header{}, local, local); ok {
		t.Error("missing Date accepted")
	}
}
