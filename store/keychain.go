package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// Backend is a keychain with go-keyring's shape: one secret string per
// (service, user). ModeKeychain uses the OS keychain through
// github.com/zalando/go-keyring unless Options.Backend supplies another.
//
// Implementations must be safe for concurrent use and return errors that
// match keyring.ErrNotFound for a missing item. The store never passes them
// anything but its service name and user names of the form
// "tw1-<52 base32 characters>[.g<gen>.c<index>]", and values of at most
// 2,300 ASCII characters, which every OS keychain holds.
//
// A Backend may also implement Available(ctx) error, which Open calls to
// check that the keychain can be reached, and fmt.Stringer, which names it
// in Status.
type Backend interface {
	Get(service, user string) (string, error)
	Set(service, user, secret string) error
	Delete(service, user string) error
}

// Keychain layout (see the package documentation for the crash-safety
// argument).
//
// An entry of up to inlineMax bytes lives inside its manifest item. A larger
// one is cut into chunks of chunkSize bytes, each stored base64-encoded
// under "<id>.g<gen>.c<i>"; the manifest item "<id>" is written last and
// names the generation, the chunk count, the length and the SHA-256. Both
// sizes keep every item under Windows' 2560-byte blob and macOS's 4096-byte
// `security -i` line with room for the names.
const (
	defaultChunkSize = 1536 // base64: 2048 characters
	defaultInlineMax = 1536 // manifest with inline data: < 2300 characters
	maxChunks        = MaxEntrySize/512 + 1
	manifestVersion  = 1
	maxGetRetries    = 3
)

// manifest is the JSON of a keychain entry's head item.
type manifest struct {
	V       int     `json:"v"`
	Gen     uint64  `json:"gen"`
	N       int     `json:"n"`                 // chunks; 0 = inline or tombstone
	Len     int     `json:"len"`               // entry bytes
	SHA256  string  `json:"sha256,omitempty"`  // hex SHA-256 of the entry
	Data    string  `json:"data,omitempty"`    // base64 entry, when inline
	Deleted bool    `json:"deleted,omitempty"` // tombstone of a chunked entry being deleted
	Prev    *genRef `json:"prev,omitempty"`    // generation to clean up
}

// genRef names the chunks of one generation.
type genRef struct {
	Gen uint64 `json:"gen"`
	N   int    `json:"n"`
}

// keychain stores blobs in a Backend: chunked, manifest last, every write
// verified, every call under a deadline.
type keychain struct {
	be        Backend
	service   string
	g         *guard
	chunkSize int
	inlineMax int
	log       *slog.Logger
}

// openKeychain checks that the keychain can be reached and returns it.
func openKeychain(ctx context.Context, o *Options) (*keychain, Status, error) {
	be, g := o.Backend, newGuard()
	if be == nil {
		be, g = osKeyring{}, osGuard
	}
	k := &keychain{be: be, service: o.Service, g: g, chunkSize: o.chunkSize, inlineMax: o.inlineMax, log: o.Logger}
	st := Status{Mode: ModeKeychain, Location: fmt.Sprintf("service %q", o.Service), Encrypted: true, Persistent: true}
	if p, ok := be.(interface{ Available(context.Context) error }); ok {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		err := g.do(pctx, func() error { return p.Available(pctx) })
		if err != nil {
			var oe *opError
			switch kind := classify(err); {
			case kind == context.Canceled:
				return nil, st, err
			case kind == ErrTimeout:
				return nil, st, fail(ErrTimeout, "the keychain did not answer the availability probe; "+optIns, err)
			case kind == ErrUnavailable && errors.As(err, &oe):
				return nil, st, err // already says why
			default:
				return nil, st, fail(ErrUnavailable, "", err)
			}
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

// call runs one backend call under ctx and classifies its error.
func (k *keychain) call(ctx context.Context, f func() error) error {
	err := k.g.do(ctx, f)
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err
	}
	return fail(classify(err), "", err)
}

func (k *keychain) getItem(ctx context.Context, user string) (string, error) {
	var v string
	err := k.call(ctx, func() error {
		var err error
		v, err = k.be.Get(k.service, user)
		return err
	})
	return v, err
}

func (k *keychain) deleteItem(ctx context.Context, user string) error {
	err := k.call(ctx, func() error { return k.be.Delete(k.service, user) })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// setVerified writes one item and reads it back (K-03): the write counts
// only if the value read back has the SHA-256 of the value written.
func (k *keychain) setVerified(ctx context.Context, user, value string) error {
	if err := k.call(ctx, func() error { return k.be.Set(k.service, user, value) }); err != nil {
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

func chunkUser(id string, gen uint64, i int) string {
	return id + ".g" + strconv.FormatUint(gen, 10) + ".c" + strconv.Itoa(i)
}

// readManifest returns the manifest of id: ErrNotFound when absent,
// ErrCorrupt or ErrUnsupportedVersion when unreadable.
func (k *keychain) readManifest(ctx context.Context, id string) (*manifest, error) {
	raw, err := k.getItem(ctx, id)
	if err != nil {
		return nil, err
	}
	return parseManifest(raw)
}

func parseManifest(raw string) (*manifest, error) {
	var probe struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal([]byte(raw), &probe); err != nil {
		return nil, fail(ErrCorrupt, "keychain manifest is not JSON", nil)
	}
	v, err := strconv.ParseInt(string(probe.V), 10, 64)
	if err != nil || v < 1 {
		return nil, fail(ErrCorrupt, "keychain manifest has no valid version", nil)
	}
	if v > manifestVersion {
		return nil, fail(ErrUnsupportedVersion, fmt.Sprintf("keychain manifest version %d", v), nil)
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fail(ErrCorrupt, "keychain manifest does not match its schema", nil)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail(ErrCorrupt, "trailing data after the keychain manifest", nil)
	}
	if m.N < 0 || m.N > maxChunks || m.Len < 0 || m.Len > MaxEntrySize || m.Gen == 0 ||
		(m.Prev != nil && (m.Prev.N < 0 || m.Prev.N > maxChunks || m.Prev.Gen >= m.Gen)) {
		return nil, fail(ErrCorrupt, "keychain manifest out of range", nil)
	}
	return &m, nil
}

// get implements blobs. A reader that races a writer of another process
// can find the generation it read about already cleaned up; it then reads
// the new manifest and tries again.
func (k *keychain) get(ctx context.Context, id string) ([]byte, error) {
	var lastErr error
	for range maxGetRetries {
		m, err := k.readManifest(ctx, id)
		if err != nil {
			return nil, err
		}
		data, err := k.readEntry(ctx, id, m)
		if err == nil || !errors.Is(err, ErrCorrupt) {
			return data, err
		}
		lastErr = err
		again, err := k.readManifest(ctx, id)
		if err != nil || again.Gen == m.Gen {
			return nil, lastErr // a stable manifest with bad chunks: really corrupt
		}
	}
	return nil, lastErr
}

// readEntry reads the entry m describes and checks its length and SHA-256.
func (k *keychain) readEntry(ctx context.Context, id string, m *manifest) ([]byte, error) {
	if m.Deleted {
		return nil, fail(ErrNotFound, "", nil)
	}
	var data []byte
	if m.N == 0 {
		d, err := base64.StdEncoding.DecodeString(m.Data)
		if err != nil {
			return nil, fail(ErrCorrupt, "keychain manifest data is not base64", nil)
		}
		data = d
	} else {
		data = make([]byte, 0, m.Len)
		for i := range m.N {
			v, err := k.getItem(ctx, chunkUser(id, m.Gen, i))
			if errors.Is(err, ErrNotFound) {
				return nil, fail(ErrCorrupt, "keychain chunk missing", nil)
			}
			if err != nil {
				return nil, err
			}
			c, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(data)+len(c) > m.Len {
				return nil, fail(ErrCorrupt, "keychain chunk malformed", nil)
			}
			data = append(data, c...)
		}
	}
	sum := sha256.Sum256(data)
	if len(data) != m.Len || hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, fail(ErrCorrupt, "keychain entry fails its checksum", nil)
	}
	return data, nil
}

// put implements blobs. The manifest write is the commit point: before it
// the old manifest and the old generation's chunks are untouched; after it
// the new manifest names chunks that were all written and verified. Old
// chunks are deleted afterwards, and leftovers of a crash are swept by the
// next put (see the package documentation).
func (k *keychain) put(ctx context.Context, id string, data []byte) error {
	old, err := k.readManifest(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		old = nil // a garbled manifest is overwritten
	case err != nil:
		return err
	}
	gen := uint64(1)
	if old != nil {
		gen = old.Gen + 1
		// Finish the clean-up a crashed put or delete left behind.
		if old.Prev != nil {
			if err := k.cleanup(ctx, id, *old.Prev); err != nil {
				return err
			}
		}
	}
	sum := sha256.Sum256(data)
	m := manifest{V: manifestVersion, Gen: gen, Len: len(data), SHA256: hex.EncodeToString(sum[:])}
	if len(data) <= k.inlineMax {
		m.Data = base64.StdEncoding.EncodeToString(data)
	} else {
		for i, off := 0, 0; off < len(data); i, off = i+1, off+k.chunkSize {
			end := min(off+k.chunkSize, len(data))
			if err := k.setVerified(ctx, chunkUser(id, gen, i), base64.StdEncoding.EncodeToString(data[off:end])); err != nil {
				return err
			}
			m.N = i + 1
		}
	}
	// Chunks of this generation beyond m.N were written by a put that
	// crashed before its manifest; nothing refers to them.
	if err := k.sweep(ctx, id, gen, m.N); err != nil {
		return err
	}
	if old != nil && old.N > 0 {
		m.Prev = &genRef{Gen: old.Gen, N: old.N}
	}
	raw, err := json.Marshal(&m)
	if err != nil {
		return fail(ErrCorrupt, "cannot encode the keychain manifest", nil)
	}
	if err := k.setVerified(ctx, id, string(raw)); err != nil {
		return err // the old entry (and its chunks) is intact
	}
	if m.Prev != nil {
		if err := k.cleanup(ctx, id, *m.Prev); err != nil {
			// The entry is saved; the next put finishes the clean-up.
			k.log.Debug("store: keychain clean-up deferred", slog.String("item", id), slog.String("error", err.Error()))
		}
	}
	k.log.Debug("store: keychain entry written", slog.String("item", id), slog.Uint64("gen", gen), slog.Int("chunks", m.N))
	return nil
}

// cleanup deletes the chunks of generation r in ascending order, so a
// crash leaves a suffix of them and the last chunk's presence tells whether
// anything is left: one read when there is nothing to do.
func (k *keychain) cleanup(ctx context.Context, id string, r genRef) error {
	if r.N == 0 {
		return nil
	}
	if _, err := k.getItem(ctx, chunkUser(id, r.Gen, r.N-1)); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	for i := range r.N {
		if err := k.deleteItem(ctx, chunkUser(id, r.Gen, i)); err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes the unreferenced chunks gen.from, gen.from+1, ... that a
// crashed put left. Chunks are written in ascending order, so they are
// contiguous; they are found by reading ahead and deleted from the highest
// down, so a crash in between leaves them contiguous again.
func (k *keychain) sweep(ctx context.Context, id string, gen uint64, from int) error {
	end := from
	for ; end < maxChunks; end++ {
		_, err := k.getItem(ctx, chunkUser(id, gen, end))
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
	}
	for i := end - 1; i >= from; i-- {
		if err := k.deleteItem(ctx, chunkUser(id, gen, i)); err != nil {
			return err
		}
	}
	return nil
}

// del implements blobs. An inline entry goes with its manifest in one
// delete. A chunked one is first replaced by a tombstone manifest (from
// then on it reads as not found), then its chunks are deleted, then the
// tombstone; a crash at any step leaves either the entry or nothing.
func (k *keychain) del(ctx context.Context, id string) error {
	old, err := k.readManifest(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case errors.Is(err, ErrCorrupt):
		return k.deleteItem(ctx, id)
	case err != nil:
		return err
	}
	if old.Prev != nil {
		if err := k.cleanup(ctx, id, *old.Prev); err != nil {
			return err
		}
	}
	if err := k.sweep(ctx, id, old.Gen+1, 0); err != nil {
		return err
	}
	if old.N > 0 && !old.Deleted {
		tomb := manifest{V: manifestVersion, Gen: old.Gen + 1, Deleted: true, Prev: &genRef{Gen: old.Gen, N: old.N}}
		raw, _ := json.Marshal(&tomb)
		if err := k.setVerified(ctx, id, string(raw)); err != nil {
			return err
		}
		if err := k.cleanup(ctx, id, *tomb.Prev); err != nil {
			return err
		}
	}
	return k.deleteItem(ctx, id)
}
