package refresh

import (
	"context"
	"time"
)

// Clear (a logout) and its promise: a token the user logged out of never
// comes back. The token in memory is dropped at once, even when the store
// cannot delete its copy; the copy it could not delete (or, when it cannot
// tell which, any stored token) is then never loaded or adopted again, and
// the delete is retried under the store lock before the next refresh.
// A successful delete or save, and Set, end this; a different token that
// another process stores later (a new login) is adopted as usual.

// clear implements Cache.Clear: it waits for any operation in flight, then,
// under the store lock, deletes the stored token and drops the one in
// memory, so no caller is handed it again.
func (c *core) clear(ctx context.Context) error {
	f, err := c.acquire(ctx, opClear)
	if err != nil {
		return err
	}
	err = c.doClear(ctx)
	c.mu.Lock()
	c.failures, c.lastErr, c.nextAttempt, c.rtWarned = 0, nil, time.Time{}, ""
	c.saveFails, c.nextSave = 0, time.Time{}
	c.rejects = nil
	c.deadErr = nil
	c.mu.Unlock()
	c.finish(f)
	return err
}

func (c *core) doClear(ctx context.Context) error {
	// Drop the token in memory first: even if the store fails, this
	// process stops using it, and nothing unsaved is left to save.
	old := c.cur.Swap(nil)
	p := c.o.Persister
	if p == nil {
		return nil
	}
	// If the delete fails, remember what must not come back: the stored
	// token if it can be read, else the one that was in memory, else any.
	failed := func(err error) error {
		stored, lerr := c.loadStored(ctx)
		c.mu.Lock()
		switch {
		case lerr == nil && stored == nil:
			c.cleared, c.clearedAny = nil, false // nothing stored after all
		case lerr == nil:
			c.cleared, c.clearedAny = stored, false
		case old != nil:
			c.cleared, c.clearedAny = old.full, false
		default:
			c.cleared, c.clearedAny = nil, true
		}
		c.mu.Unlock()
		return err
	}
	unlock, err := c.lockKey(ctx)
	if err != nil {
		return failed(err)
	}
	defer unlock()
	if err := p.Delete(ctx, c.key); err != nil {
		return failed(c.wrap("deleting the stored token", err))
	}
	c.forgetCleared()
	return nil
}

// retryClear finishes, under the store lock, a Clear whose delete failed:
// the logged-out token is deleted if the store still holds it. A different
// stored token (a login in another process) ends the Clear's hold.
func (c *core) retryClear(ctx context.Context) {
	c.mu.Lock()
	tomb, anyTok := c.cleared, c.clearedAny
	c.mu.Unlock()
	if tomb == nil && !anyTok {
		return
	}
	stored, err := c.loadStored(ctx)
	if err != nil {
		return
	}
	if stored != nil && (anyTok || sameToken(stored, tomb)) {
		if derr := c.o.Persister.Delete(ctx, c.key); derr != nil {
			c.o.Logger.Debug("refresh: deleting the cleared token failed again", "key", c.key, "error", c.wrap("deleting the stored token", derr))
			return
		}
	}
	c.forgetCleared()
}

// clearedHolds reports whether t, a stored token, is one a failed Clear
// could not delete, and so reads as absent.
func (c *core) clearedHolds(t *token) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clearedAny || (c.cleared != nil && sameToken(t, c.cleared))
}

// forgetCleared ends a failed Clear's hold: the store's token counts again.
func (c *core) forgetCleared() {
	c.mu.Lock()
	c.cleared, c.clearedAny = nil, false
	c.mu.Unlock()
}
