package oauthwire

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"86400", 24 * time.Hour, true},
		{"99999999999999999999999999", MaxRetryAfter, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second, true},
		{now.Add(30 * time.Second).Format(time.ANSIC), 30 * time.Second, true},
		{"Fri, 31 Dec 9999 23:59:59 GMT", MaxRetryAfter, true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"+5", 0, false},
		{"soon", 0, false},
		{"5s", 0, false},
		{"2030-01-01T12:00:30Z", 0, false},
	}
	for _, c := range cases {
		got, ok := ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

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
