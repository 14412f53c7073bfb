package httpretry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

func TestNotSent(t *testing.T) {
	t.Parallel()
	checkErrs(t, "NotSent", NotSent, []errCase{
		{"name did not resolve", asURLError(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "as.example"}}), true},
		{"dial refused", asURLError(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{"dial timeout", asURLError(&net.OpError{Op: "dial", Err: context.DeadlineExceeded}), true},
		{"certificate refused", asURLError(x509.UnknownAuthorityError{}), true},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, true},
		{"reset while reading", asURLError(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), false},
		{"write failed", asURLError(&net.OpError{Op: "write", Err: syscall.EPIPE}), false},
		{"connection closed mid-response", asURLError(io.ErrUnexpectedEOF), false},
		{"deadline", asURLError(context.DeadlineExceeded), false},
		{"unknown", errors.New("something"), false},
		{"nil", nil, false},
		{"a step before the request failed", fmt.Errorf("discovery: %w", errors.Join(ErrNotSent, asURLError(&net.OpError{Op: "read", Err: syscall.ECONNRESET}))), true},
	})
}
