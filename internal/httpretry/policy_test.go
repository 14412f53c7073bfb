package httpretry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
)

func TestRetryableStatus(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{
		200: false, 204: false, 301: false, 400: false, 401: false, 404: false, 408: false,
		429: true, 500: true, 501: false, 502: true, 503: true, 504: true, 599: true, 600: false,
	} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	checkErrs(t, "Permanent", Permanent, []errCase{
		{"unknown authority", asURLError(x509.UnknownAuthorityError{}), true},
		{"hostname mismatch", asURLError(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "as.example"}), true},
		{"certificate verification", asURLError(&tls.CertificateVerificationError{Err: errors.New("expired")}), true},
		{"behind a proxy", asURLError(&net.OpError{Op: "proxyconnect", Err: x509.CertificateInvalidError{}}), true},
		{"unsupported scheme", asURLError(errors.New(`unsupported protocol scheme "ftp"`)), true},
		{"redirect limit", asURLError(errors.New("stopped after 10 redirects")), true},
		{"invalid header", asURLError(errors.New(`net/http: invalid header field value for "X"`)), true},
		{"refused", asURLError(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), false},
		{"reset", asURLError(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), false},
		{"EOF", asURLError(io.EOF), false},
		{"plain", errors.New("proxy said no"), false},
		{"nil", nil, false},
	})
}
