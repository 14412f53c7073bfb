package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
)

// openKeychain checks that the keychain can be reached and is unlocked, and
// returns it.
func openKeychain(ctx context.Context, o *Options) (*keychain, Status, error) {
	be, g := o.Backend, newGuard()
	if be == nil {
		be, g = osKeyring{}, osGuard
	}
	k := &keychain{be: be, service: o.Service, g: g, chunkSize: o.chunkSize, inlineMax: o.inlineMax, log: o.Logger}
	st := Status{Mode: ModeKeychain, Location: fmt.Sprintf("service %q", o.Service), Encrypted: true, Persistent: true}
	if p, ok := be.(interface{ Available(context.Context) error }); ok {
		pctx, cancel := context.WithTimeout(ctx, o.probeTimeout)
		defer cancel()
		_, err := guarded(pctx, g, func() (struct{}, error) { return struct{}{}, p.Available(pctx) })
		if err != nil {
			return nil, st, probeError(err, "the keychain did not answer the availability probe")
		}
	}
	switch d := be.(type) {
	case osKeyring:
		st.Backend = osBackendName()
	case fmt.Stringer:
		st.Backend = d.String()
	default:
		st.Backend = "custom keychain backend"
	}
	return k, st, nil
}

// probeError types the failure of an availability probe. A timeout or a
// locked keychain is never a reason to change mode, so those messages name
// the opt-ins as ErrUnavailable's own message does: the user decides.
func probeError(err error, timeoutDetail string) error {
	var oe *opError
	switch kind := classify(err); {
	case kind == context.Canceled:
		return err
	case (kind == ErrUnavailable || kind == ErrLocked) && errors.As(err, &oe):
		return err // already says why
	case kind == ErrTimeout:
		// The cause's own text would repeat the sentinel's message.
		return &opError{kind: ErrTimeout, detail: timeoutDetail + "; " + optIns, cause: err}
	case kind == ErrLocked:
		return fail(ErrLocked, "the keychain is locked; "+optIns, err)
	default:
		return fail(ErrUnavailable, "", err)
	}
}

// maxVanished bounds how often one item read or delete is run again because
// the item vanished between the backend's search and its read.
const maxVanished = 4

// backendCall runs one backend call under the keychain's guard and ctx and
// classifies its error. The value comes back only as f's result.
func backendCall[T any](ctx context.Context, k *keychain, f func() (T, error)) (T, error) {
	v, err := guarded(ctx, k.g, f)
	if err == nil {
		return v, nil
	}
	var zero T
	var oe *opError
	if errors.As(err, &oe) {
		return zero, err
	}
	return zero, fail(classify(err), "", err)
}

// itemCall runs a backend call that looks an item up and then uses it.
// go-keyring's Get and Delete on the Secret Service are two D-Bus calls: a
// search for the item, then a call on the object path the search found.
// When another process deletes the item in between (a rotation cleaning up
// old chunks, a logout), the second call fails with an error for an object
// that no longer exists (gnome-keyring answers
// org.freedesktop.DBus.Error.UnknownMethod: "No such interface
// “org.freedesktop.Secret.Item” on object at path ..." or "Object does not
// exist at path ..."). That says nothing about whether the keychain works,
// so the call is made again: its fresh search finds the item's current
// value, or nothing. Only when the item vanishes on every attempt is the
// failure returned, marked as caused by concurrent writers (see
// opError.changing) so that Load reads again under the write lock.
func itemCall[T any](ctx context.Context, k *keychain, f func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := backendCall(ctx, k, f)
		if err == nil || !isNoSuchObject(err) {
			return v, err
		}
		if attempt == maxVanished {
			return v, markChanging(fail(ErrUnavailable, "a keychain item vanished between its lookup and its use on every attempt", err))
		}
	}
}

func (k *keychain) getItem(ctx context.Context, user string) (string, error) {
	return itemCall(ctx, k, func() (string, error) { return k.be.Get(k.service, user) })
}

func (k *keychain) deleteItem(ctx context.Context, user string) error {
	_, err := itemCall(ctx, k, func() (struct{}, error) { return struct{}{}, k.be.Delete(k.service, user) })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (k *keychain) setItem(ctx context.Context, user, value string) error {
	_, err := backendCall(ctx, k, func() (struct{}, error) { return struct{}{}, k.be.Set(k.service, user, value) })
	return err
}

// setVerified writes one item and reads it back: a keychain can report
// success for a write it dropped (macOS does at the 4096-byte line limit of
// `security -i`), so the write counts only if the value read back has the
// SHA-256 of the value written.
func (k *keychain) setVerified(ctx context.Context, user, value string) error {
	if err := k.setItem(ctx, user, value); err != nil {
		return err
	}
	got, err := k.getItem(ctx, user)
	if errors.Is(err, ErrNotFound) {
		return fail(ErrWriteVerify, "item missing after the write", nil)
	}
	if err != nil {
		return err
	}
	if sha256.Sum256([]byte(got)) != sha256.Sum256([]byte(value)) {
		return fail(ErrWriteVerify, "item read back differs from the item written", nil)
	}
	return nil
}
