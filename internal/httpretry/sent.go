package httpretry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"
)

// ErrNotSent marks the failure of a step before a request (such as
// finding the server's endpoints): the request was never made, so NotSent
// reports true for any error that wraps it.
var ErrNotSent = errors.New("the request was not sent")

// NotSent reports whether err, the failure of an HTTP request, certainly
// happened before any byte of the request reached the server: the name did
// not resolve, the connection was never made (refused, unreachable, dial
// timeout), or the TLS handshake failed on the server's certificate. Only
// then may a request that carries a single-use credential (a refresh token,
// an authorization code, a device code) be sent again, or its credential
// be presented again: after any other failure (a reset, a read timeout)
// the server may have used it, and a replay is a reuse (for a rotating
// refresh token, the revocation of the whole family).
//
// An error NotSent does not recognise is taken as possibly sent: a missing
// signal is never taken as proof.
func NotSent(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotSent):
		return true
	case errors.As(err, &dns), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return true
	case errors.As(err, &op) && op.Op == "dial":
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
