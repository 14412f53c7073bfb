package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/bench"
	"github.com/tokenward/tokenward/internal/leakscan"
)

// TestMain lets the test binary act as a process of the process case.
func TestMain(m *testing.M) {
	if bench.IsStampedeChild() {
		os.Exit(bench.StampedeChild(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Parallel()
	var out, errOut strings.Builder
	args := []string{"-goroutines", "10", "-processes", "2", "-latency", "20ms", "-store", "plaintext-file", "-grant", "client_credentials"}
	if code := run(t.Context(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"10 goroutines  tokenward", "10 goroutines   x-oauth2", "2 processes  tokenward", "2 processes   x-oauth2"} {
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
		{"-grant", "password"},
		{"-store", "memory"},
		{"-store", "floppy"},
		{"-goroutines", "0", "-processes", "0"},
		{"-latency", "0s"},
		{"extra"},
	} {
		var out, errOut strings.Builder
		if code := run(t.Context(), args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
