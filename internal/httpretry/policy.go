package httpretry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// RetryableStatus reports whether a response status is worth another
// attempt when the request may be repeated at all: 429 (too many requests)
// and every 5xx except 501 (not implemented, which a retry cannot change).
func RetryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || (code >= 500 && code <= 599 && code != http.StatusNotImplemented)
}

// Permanent reports whether err, the failure of an HTTP attempt, is one no
// retry can fix: the server's certificate was refused, the URL's scheme is
// not supported, a header is malformed, or the redirect limit was reached.
// (A refused certificate still means the request was never sent, see
// [NotSent]; it is just pointless to send it again.)
func Permanent(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return true
	}
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Err == nil {
		return false
	}
	// net/http reports these only in the text of its errors.
	msg := ue.Err.Error()
	for _, s := range []string{"unsupported protocol scheme", "invalid header", "certificate is not trusted"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return strings.HasPrefix(msg, "stopped after ") && strings.HasSuffix(msg, " redirects")
}
