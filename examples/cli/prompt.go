package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// lockedWriter serializes writes to w: the program, the client's prompt
// and its logger (whose browser opener runs on its own goroutine) share
// stderr, and their lines must not interleave. Once closed it drops what
// is written: the opener's goroutine may outlive the run, and nothing
// may be printed after the program has said how it ended.
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// Write writes p to w under the lock, unless the writer is closed.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.w.Write(p)
}

// close makes later writes do nothing.
func (l *lockedWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}

// waitingPrompt is the client's Prompt during a browser login: after the
// client's message (the address to open), it says that the program waits,
// how to stop it and for how long, so that a person facing a silent
// terminal knows what is going on.
type waitingPrompt struct {
	w       io.Writer
	timeout func() string
	once    sync.Once
}

// Write passes p on, then adds the waiting line after the first message.
func (p *waitingPrompt) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.once.Do(func() {
		fmt.Fprintf(p.w, "Waiting for you to sign in in the browser (Ctrl-C to cancel; gives up after %s)\n", p.timeout())
	})
	return n, err
}

// browserFailedMsg is the message the client logs when the system browser
// could not be started. The client exposes no default opener to wrap
// (Options.OpenBrowser nil means its own), so its log is the only sign.
const browserFailedMsg = "client: could not open a browser"

// logger returns the client's logger: with --verbose, a text handler on
// stderr; in every case it watches for the browser failing to open, to
// tell the user.
func (a *app) logger() *slog.Logger {
	var inner slog.Handler = slog.DiscardHandler
	if a.set.verbose {
		inner = slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	w := &watch{inner: inner, once: &sync.Once{}, tell: func() {
		fmt.Fprintln(a.stderr, "cli: the browser could not be opened: open the address above in a browser yourself, or sign in from another device with:")
		fmt.Fprintln(a.stderr, " ", a.line.command("login", []typedFlag{{"device", "true"}}).String())
	}}
	return slog.New(w)
}

// watch is a slog.Handler that passes records on to inner and calls tell
// once when the client reports that no browser could be opened.
type watch struct {
	inner slog.Handler
	once  *sync.Once
	tell  func()
}

// Enabled is true at every level: the browser's failure is a debug record.
func (w *watch) Enabled(context.Context, slog.Level) bool { return true }

// Handle watches for the browser's failure and passes r on when inner
// wants it.
func (w *watch) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == browserFailedMsg {
		w.once.Do(w.tell)
	}
	if w.inner.Enabled(ctx, r.Level) {
		return w.inner.Handle(ctx, r)
	}
	return nil
}

// WithAttrs returns a watch over inner with attrs.
func (w *watch) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *w
	c.inner = w.inner.WithAttrs(attrs)
	return &c
}

// WithGroup returns a watch over inner with the group.
func (w *watch) WithGroup(name string) slog.Handler {
	c := *w
	c.inner = w.inner.WithGroup(name)
	return &c
}
