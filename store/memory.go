package store

import (
	"bytes"
	"context"
	"sync"
)

// memory keeps blobs in process memory (ModeMemory).
type memory struct {
	mu sync.RWMutex // guards m
	m  map[string][]byte
}

func newMemory() *memory { return &memory{m: map[string][]byte{}} }

func (m *memory) get(ctx context.Context, id string) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx, "")
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.m[id]
	if !ok {
		return nil, fail(ErrNotFound, "", nil)
	}
	return bytes.Clone(v), nil
}

func (m *memory) put(ctx context.Context, id string, data []byte, _ string) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[id] = bytes.Clone(data)
	return nil
}

func (m *memory) del(ctx context.Context, id string) error {
	if ctx.Err() != nil {
		return ctxError(ctx, "")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, id)
	return nil
}
