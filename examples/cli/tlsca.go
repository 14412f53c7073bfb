package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/tokenward/tokenward/store"
)

// loadCA returns a TLS configuration that trusts the certificates of the
// PEM file path besides the system's: for an issuer or API behind a
// private or self-signed CA. A file that cannot be read or holds no
// certificate is an error: silently trusting only the system would fail
// later with a less clear message.
func loadCA(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named below already
		}
		return nil, fmt.Errorf("--ca-file %s cannot be read: %v", printable(path), err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", printable(path))
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// parseStore returns the store mode named by --store.
func parseStore(s string) (store.Mode, error) {
	m, err := store.ParseMode(s)
	if err != nil {
		return "", fmt.Errorf("--store %q: want keychain, encrypted-file, memory or plaintext-file", printable(s))
	}
	return m, nil
}
