package oauthtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// This file holds the network side of the server: listeners, the
// self-signed certificate of Config.TLS, the clients that trust it, and
// the connection resets that faults need.

// CertPool returns a pool holding the server's certificate (nil without
// TLS).
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.cert)
	return p
}

// TLSConfig returns a client TLS configuration that trusts the server (nil
// without TLS). Each call returns a new value.
func (s *Server) TLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
}

// CertificatePEM returns the server's self-signed certificate in PEM form
// (nil without TLS), for programs that take a CA file, such as
// examples/cli's --ca-file.
func (s *Server) CertificatePEM() []byte {
	if s.cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw})
}

// HTTPClient returns a new *http.Client that reaches the server, its APIs
// and its trap over the network, trusts their certificate, follows no
// redirects and gives up after 30 s.
func (s *Server) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.TLSConfig()
	tr.Proxy = nil
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// makeCert creates a self-signed ECDSA certificate for the loopback names.
func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "oauthtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	s.cert, err = x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	s.tlsCert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: s.cert}
	return nil
}

type listening struct {
	url, host string
	hs        *http.Server
	reset     *resetListener
	ln        net.Listener
}

func closeHTTP(hs *http.Server) {
	if hs != nil {
		hs.Close()
	}
}

// listen prepares serving h on a new 127.0.0.1 listener (TLS when
// configured); serve starts it. In memory mode it only picks an address.
func (s *Server) listen(h http.Handler, resettable bool) (*listening, error) {
	if s.inMemory {
		return s.memAddress()
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oauthtest: listen: %w", err)
	}
	var ln net.Listener = raw
	var rl *resetListener
	if resettable {
		rl = &resetListener{Listener: raw}
		ln = rl
	}
	scheme := "http"
	if s.tlsCert != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{*s.tlsCert},
			NextProtos:   []string{"http/1.1"}, // HTTP/1.1 only: faults hijack connections
			MinVersion:   tls.VersionTLS12,
		})
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake noise, never secrets
		BaseContext:       func(net.Listener) context.Context { return context.Background() },
	}
	host := raw.Addr().String()
	return &listening{url: scheme + "://" + host, host: host, hs: hs, reset: rl, ln: ln}, nil
}

// memAddress picks the address of an in-memory server, API or trap: a
// port reserved and released at once, so dialing it fails fast. A port
// released can come back at the next pick, so a port this server already
// uses is skipped, and the new one is held (answering 404) until the
// caller registers its handler: else a trap could take over the server's
// address.
func (s *Server) memAddress() (*listening, error) {
	scheme := "http"
	if s.tlsCert != nil {
		scheme = "https"
	}
	for range 100 {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("oauthtest: listen: %w", err)
		}
		host := raw.Addr().String()
		raw.Close()
		s.mu.Lock()
		_, taken := s.hosts[host]
		if !taken {
			s.hosts[host] = http.NotFoundHandler()
		}
		s.mu.Unlock()
		if !taken {
			return &listening{url: scheme + "://" + host, host: host}, nil
		}
	}
	return nil, errors.New("oauthtest: listen: no free port")
}

// serve starts serving; call it once the handler's fields are set.
func (l *listening) serve() {
	if l.hs != nil {
		go l.hs.Serve(l.ln)
	}
}

// close releases a listener that will not be served.
func (l *listening) close() {
	if l.ln != nil {
		l.ln.Close()
	}
}

// resetListener resets (RST) the next n accepted connections before
// anything is read from them.
type resetListener struct {
	net.Listener
	n atomic.Int64
}

// Accept implements net.Listener, resetting connections while n > 0.
func (l *resetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if takeOne(&l.n) {
			resetConn(c)
			continue
		}
		return c, nil
	}
}

// takeOne decrements n if it is positive and reports whether it did.
func takeOne(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// ResetNextConnections makes the server reset (TCP RST) the next n new
// connections right after accepting them, before reading a request: the
// client sees a connection reset (an error matching syscall.ECONNRESET)
// and the server never sees the request, which Stats does not count.
// Requests on pooled keep-alive connections are not affected. Through
// Transport, the next n requests to the server (not its APIs) fail the
// same way.
func (s *Server) ResetNextConnections(n int) {
	if s.resetLn != nil {
		s.resetLn.n.Store(int64(n))
	}
	s.resetMem.Store(int64(n))
}

// resetConn closes c with SO_LINGER 0 so the peer sees a reset.
func resetConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
