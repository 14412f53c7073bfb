package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Tests of what every mode shares: the Store methods' contract.

// TestStatus: each mode describes itself: its backend, whether it
// encrypts and persists, and a warning only for plaintext files.
func TestStatus(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		e := newEnv(t, m)
		st := e.Status()
		if st.Mode != m.mode || st.Backend == "" {
			t.Errorf("%s: Status = %+v", m.name, st)
		}
		wantEnc := m.mode == ModeKeychain || m.mode == ModeEncryptedFile
		if st.Encrypted != wantEnc || st.Persistent != (m.mode != ModeMemory) || (st.Warning != "") != (m.mode == ModePlaintextFile) {
			t.Errorf("%s: Status = %+v", m.name, st)
		}
		if m.mode == ModeKeychain && st.Backend != m.model.String() {
			t.Errorf("%s: backend %q", m.name, st.Backend)
		}
	}
}

// TestCanceledContext: a canceled context fails Load and Save with
// context.Canceled in every mode.
func TestCanceledContext(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		e := newEnv(t, m)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.Load(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Load = %v, want context.Canceled", m.name, err)
		}
		if err := e.Save(ctx, "k", &Entry{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Save = %v, want context.Canceled", m.name, err)
		}
	}
}

// TestConcurrentUse: every mode is safe for concurrent use (-race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 10 {
						name := fmt.Sprint("n", (g+i)%3)
						want := &Entry{AccessToken: fmt.Sprint("at-", g, "-", i), Subject: name}
						if err := e.Save(ctx, name, want); err != nil {
							t.Error(err)
							return
						}
						got, err := e.Load(ctx, name)
						if err != nil || got.Subject != name {
							t.Errorf("Load(%s) = %v, %v", name, got, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
