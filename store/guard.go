package store

import (
	"context"
	"sync"
)

// guard runs backend calls that take no context (every go-keyring call)
// under a deadline (PITFALLS K-08). It admits one call at a time. The call
// runs in its own goroutine; when the caller's context ends first, the
// caller gets ErrTimeout at once and the goroutine is left to finish. Until
// it does, the guard is "hung": every later call fails fast with ErrTimeout
// instead of starting another goroutine that would hang too. So a guard
// leaks at most one goroutine, and the OS keychain has one guard per
// process.
type guard struct {
	sem  chan struct{} // holds a token while a call runs (its goroutine releases it)
	mu   sync.Mutex    // guards hung
	hung bool          // a caller gave up on the running call
}

func newGuard() *guard { return &guard{sem: make(chan struct{}, 1)} }

// osGuard guards the OS keychain, which is one per process.
var osGuard = newGuard()

// errHung is the detail of the fail-fast timeout.
const errHung = "an earlier keychain call is still blocked (is an unlock prompt waiting?); not starting another"

// do runs f under ctx.
func (g *guard) do(ctx context.Context, f func() error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	if g.isHung() {
		return &opError{kind: ErrTimeout, detail: errHung}
	}
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		if g.isHung() {
			return &opError{kind: ErrTimeout, detail: errHung}
		}
		return ctxError(ctx, "waiting for another keychain call")
	}
	done := make(chan struct{})
	var err error
	go func() {
		e := f()
		g.mu.Lock()
		err = e
		close(done)
		g.hung = false
		g.mu.Unlock()
		<-g.sem
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-done: // finished while we were noticing the deadline
		return err
	default:
	}
	g.hung = true
	return ctxError(ctx, "the keychain did not answer")
}

func (g *guard) isHung() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hung
}
