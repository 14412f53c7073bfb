package main

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/tokenward/tokenward/client"
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

// logger returns the client's logger: with --verbose, a text handler on
// stderr (tokenward redacts what it logs); otherwise none.
func (a *app) logger() *slog.Logger {
	if !a.set.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tellWhenNoBrowser wraps cfg's browser opener (the system browser when
// none is set) so that the user hears at once when no browser starts, and
// how to go on: the address the client printed, or the device flow.
func (a *app) tellWhenNoBrowser(cfg *client.Options) {
	open := cfg.OpenBrowser
	if open == nil {
		open = client.OpenSystemBrowser
	}
	cfg.OpenBrowser = func(u string) error {
		err := open(u)
		if err != nil {
			fmt.Fprintln(a.stderr, "cli: the browser could not be opened: open the address above in a browser yourself, or sign in from another device with:")
			fmt.Fprintln(a.stderr, " ", a.line.command("login", []typedFlag{{"device", "true"}}).String())
		}
		return err
	}
}
