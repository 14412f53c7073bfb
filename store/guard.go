package store

import (
	"context"
	"sync"
)

// guard runs backend calls that take no context (every go-keyring call)
// under a deadline: a Secret Service whose unlock prompt is never answered
// blocks such a call forever. It admits one call at a time. The call runs
// in its own goroutine; when the caller's context ends first, the caller
// gets ErrTimeout at once and the goroutine is left to finish. Until it
// does, the guard is "hung": every later call fails fast with ErrTimeout
// instead of starting another goroutine that would hang too. So a guard
// leaks at most one goroutine, and the OS keychain has one guard per
// process.
//
// Calls go through [guarded], which hands the call's result back through a
// channel: a call the caller gave up on has nobody to write to, so its late
// result is dropped and can never be seen by that caller or a later one.
type guard struct {
	sem  chan struct{} // holds a token while a call runs (its goroutine releases it)
	mu   sync.Mutex    // guards hung, and orders a result's delivery against giving up
	hung bool          // a caller gave up on the running call
}

func newGuard() *guard { return &guard{sem: make(chan struct{}, 1)} }

// osGuard guards the OS keychain, which is one per process.
var osGuard = newGuard()

// errHung is the detail of the fail-fast timeout.
const errHung = "an earlier keychain call is still blocked (is an unlock prompt waiting?); not starting another"

// result carries what a guarded call returned from its goroutine.
type result[T any] struct {
	v   T
	err error
}

// guarded runs f under g and ctx and returns what f returned, or the zero
// T and ErrTimeout (or context.Canceled) when ctx ends first. f must not
// write anything its caller reads afterwards: its result is all it gives
// back, and that travels through a buffered channel, so an abandoned call
// finishes without blocking and without touching the caller's variables.
func guarded[T any](ctx context.Context, g *guard, f func() (T, error)) (T, error) {
	var zero T
	if ctx.Err() != nil {
		return zero, ctxError(ctx, "")
	}
	if g.isHung() {
		return zero, &opError{kind: ErrTimeout, detail: errHung}
	}
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		if g.isHung() {
			return zero, &opError{kind: ErrTimeout, detail: errHung}
		}
		return zero, ctxError(ctx, "waiting for another keychain call")
	}
	done := make(chan result[T], 1) // buffered: the send never waits for a receiver
	go func() {
		v, err := f()
		// Delivering the result and clearing hung happen under mu, so a
		// caller that is giving up either finds the result or marks the
		// guard hung before it is cleared, never in between.
		g.mu.Lock()
		done <- result[T]{v: v, err: err}
		g.hung = false
		g.mu.Unlock()
		<-g.sem
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case r := <-done: // finished while we were noticing the deadline
		return r.v, r.err
	default:
	}
	g.hung = true
	return zero, ctxError(ctx, "the keychain did not answer")
}

func (g *guard) isHung() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hung
}
