package oauthtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// Transport returns an http.RoundTripper that delivers requests for the
// server, its APIs and its trap (by host:port) to their handlers in memory,
// with no socket: the handler runs in a goroutine started by RoundTrip, so
// inside a testing/synctest bubble everything (including the server's
// Config.Now when it is time.Now) follows the bubble's fake clock. Faults
// behave as over the network: resets and lost responses fail RoundTrip (or
// the body read) with an error matching syscall.ECONNRESET, hangs end when
// the request's context does. Requests for other hosts fail as a dial
// error. TLS is not simulated (https URLs are accepted as they are).
func (s *Server) Transport() http.RoundTripper { return memTransport{s: s} }

type memTransport struct{ s *Server }

// connReset is the error a reset connection produces.
func connReset(op string) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, syscall.ECONNRESET)}
}

// RoundTrip implements http.RoundTripper.
func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody := func() {
		if req.Body != nil {
			req.Body.Close()
		}
	}
	if req.URL == nil {
		closeBody()
		return nil, errors.New("oauthtest: request without URL")
	}
	t.s.mu.RLock()
	h := t.s.hosts[req.URL.Host]
	t.s.mu.RUnlock()
	select {
	case <-t.s.closed:
		h = nil
	default:
	}
	if h == nil {
		closeBody()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody()
		return nil, err
	}
	if h == t.s.handler && takeOne(&t.s.resetMem) {
		closeBody()
		return nil, connReset("read")
	}

	sreq := req.Clone(ctx)
	sreq.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "127.0.0.1:1"
	sreq.Proto, sreq.ProtoMajor, sreq.ProtoMinor = "HTTP/1.1", 1, 1
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	if req.URL.Scheme == "https" {
		sreq.TLS = &tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13}
	}
	body := req.Body
	if body == nil {
		body = http.NoBody
	}
	sreq.Body = body

	pr, pw := io.Pipe()
	w := &memWriter{header: http.Header{}, ready: make(chan struct{}), pw: pw}
	go func() {
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				w.abort()
			}
			w.finish()
			body.Close()
		}()
		h.ServeHTTP(w, sreq)
	}()
	select {
	case <-w.ready:
	case <-ctx.Done():
		pw.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if w.aborted {
		return nil, connReset("read")
	}
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	resp := &http.Response{
		Status:     strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode: w.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        w.snapshot,
		Body:          &memBody{pr: pr, stop: stop},
		ContentLength: -1,
		Request:       req,
	}
	if cl, err := strconv.ParseInt(w.snapshot.Get("Content-Length"), 10, 64); err == nil {
		resp.ContentLength = cl
	}
	if req.Method == http.MethodHead {
		resp.Body.Close()
		resp.Body = http.NoBody
	}
	return resp, nil
}

type memBody struct {
	pr   *io.PipeReader
	stop func() bool
	once sync.Once
}

// Read implements io.Reader.
func (b *memBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

// Close implements io.Closer; it also stops watching the context.
func (b *memBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.pr.Close()
	})
	return nil
}

// memWriter is the server-side http.ResponseWriter of Transport.
type memWriter struct {
	header http.Header
	pw     *io.PipeWriter

	mu        sync.Mutex // guards the fields below
	committed bool
	aborted   bool
	status    int
	snapshot  http.Header
	ready     chan struct{} // closed when committed
}

// Header implements http.ResponseWriter.
func (w *memWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter; 1xx codes are dropped.
func (w *memWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("oauthtest: invalid status %d", code))
	}
	if code < 200 {
		return // informational responses are not delivered
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return
	}
	w.committed, w.status, w.snapshot = true, code, w.header.Clone()
	close(w.ready)
}

// Write implements http.ResponseWriter.
func (w *memWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush implements http.Flusher (writes are unbuffered).
func (w *memWriter) Flush() {}

// abort resets the "connection": before the response started RoundTrip
// fails, after it the body read does.
func (w *memWriter) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pw.CloseWithError(connReset("read"))
	if !w.committed {
		w.committed, w.aborted = true, true
		close(w.ready)
	}
}

func (w *memWriter) finish() {
	w.WriteHeader(http.StatusOK)
	w.pw.Close()
}
