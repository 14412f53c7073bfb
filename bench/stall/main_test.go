package main

import (
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/leakscan"
)

func TestRun(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"-duration", "200ms", "-workers", "2"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"stall: 2 goroutines for 200ms each", "tokenward", "x-oauth2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if found := leakscan.Find(out.String() + errOut.String()); len(found) > 0 {
		t.Fatalf("secret-shaped strings in the output: %v", found)
	}
}

func TestRunBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-only", "curl"},
		{"-lifetime", "0s"},
		{"-workers", "-1"},
		{"extra"},
	} {
		var out, errOut strings.Builder
		if code := run(t.Context(), args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
