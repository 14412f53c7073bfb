package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// caFile writes the self-signed certificate of as (a TLS server) to a PEM
// file and returns its path.
func caFile(t *testing.T, as *oauthtest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, as.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An issuer behind a CA this machine does not trust gets a hint naming
// --ca-file, in the user's own command; with the CA's file (flag or
// TOKENWARD_CA_FILE) it works; a file that cannot be read or holds no
// certificate is a clear usage error.
func TestCAFile(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{TLS: true})
	memoryStore(t)
	base := []string{"--issuer", as.Issuer(), "--client-id", "x", "--profile", "work"}

	r := cliRun(t, nil, append(base, "login", "--device")...)
	r.want(t, 1, "certificate signed by unknown authority", "hint: the server's certificate is signed by a CA this machine does not trust",
		"cli --ca-file ca.pem --client-id x --issuer "+as.Issuer()+" --profile work login --device")

	pemPath := caFile(t, as)
	cliRun(t, nil, append(base, "--ca-file", pemPath, "status")...).want(t, 0, "not signed in (profile work)")
	t.Setenv("TOKENWARD_CA_FILE", pemPath)
	cliRun(t, nil, append(base, "status")...).want(t, 0, "not signed in (profile work)")

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cliRun(t, nil, append(base, "--ca-file", empty, "status")...).want(t, 2, "--ca-file "+empty+" holds no PEM certificate")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cliRun(t, nil, append(base, "--ca-file", missing, "status")...).want(t, 2, "--ca-file "+missing+" cannot be read: no such file or directory")
}
