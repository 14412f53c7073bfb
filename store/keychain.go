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
	"sync"
	"time"
)

// Backend is a keychain with go-keyring's shape: one secret string per
// (service, user). ModeKeychain uses the OS keychain through
// github.com/zalando/go-keyring unless Options.Backend supplies another.
//
// Implementations must be safe for concurrent use and return errors that
// match keyring.ErrNotFound for a missing item. The store never passes them
// anything but its service name and user names of the form
// "tw1-<52 base32 characters>[.g<gen>.c<index>]" (entries) or
// "tw1-check-<16 hex digits>" (Store.CheckWrite), and values of at most
// 2,300 ASCII characters, which every OS keychain holds.
//
// A Backend may also implement Available(ctx) error, which Open calls to
// check that the keychain can be reached (an error it cannot classify
// means ErrUnavailable) and is unlocked (an error matching ErrLocked, or a
// D-Bus org.freedesktop.Secret.Error.IsLocked), and fmt.Stringer, which
// names it in Status.
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
	// labelTimeout bounds the relabelling after a write (labelTimeout
	// when zero; tests shorten it).
	labelTimeout time.Duration

	checkMu sync.Mutex // guards unswept
	unswept []string   // write-check items whose delete failed; the next check retries it
}

func chunkUser(id string, gen uint64, i int) string {
	return id + ".g" + strconv.FormatUint(gen, 10) + ".c" + strconv.Itoa(i)
}

// readManifest returns the manifest of id: ErrNotFound when absent,
// ErrCorrupt or ErrUnsupportedVersion when unreadable.
func (k *keychain) readManifest(ctx context.Context, id string) (*manifest, error) {
	m, _, err := k.readManifestRaw(ctx, id)
	return m, err
}

// readManifestRaw is readManifest that also returns the item's text, which
// an unreadable manifest may still hold generation numbers in.
func (k *keychain) readManifestRaw(ctx context.Context, id string) (*manifest, string, error) {
	raw, err := k.getItem(ctx, id)
	if err != nil {
		return nil, "", err
	}
	m, err := parseManifest(raw)
	return m, raw, err
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

// get implements blobs. It takes no lock: a writer commits by replacing the
// manifest, so a reader normally sees a whole entry. A reader that races
// writers of other processes can still find an item gone (a chunk of the
// generation it read about already cleaned up, the manifest of an entry
// being deleted) or chunks of another entry under the same names (an entry
// deleted and saved again restarts at generation 1), which the length and
// checksum catch. It then reads the manifest again: gone, or a tombstone,
// means the entry was deleted while it was read (ErrNotFound); anything
// else, that a writer finished meanwhile, so it tries again. After
// maxGetRetries attempts that all failed so, it returns the last failure
// marked changing, and Load reads once more under the write lock, where
// no writer can interfere; only that read may call an entry corrupt.
func (k *keychain) get(ctx context.Context, id string) ([]byte, error) {
	var lastErr error
	for range maxGetRetries {
		m, err := k.readManifest(ctx, id)
		if err != nil {
			if !isChanging(err) {
				return nil, err
			}
			lastErr = err
			continue
		}
		data, err := k.readEntry(ctx, id, m)
		if err == nil || !(errors.Is(err, ErrCorrupt) || isChanging(err)) {
			return data, err
		}
		lastErr = err
		again, err := k.readManifest(ctx, id)
		switch {
		case err == nil && again.Deleted:
			return nil, fail(ErrNotFound, "", nil) // being deleted
		case errors.Is(err, ErrNotFound):
			// Another process deleted the entry while we read it: there
			// is no entry, not a corrupt one.
			return nil, err
		case err != nil && !isChanging(err):
			return nil, err // a timeout, a garbled manifest
		}
	}
	return nil, markChanging(lastErr)
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
// next put (see the package documentation). Last, the items get a label
// where the keychain shows one (see labelEntry).
func (k *keychain) put(ctx context.Context, id string, data []byte, label string) error {
	old, raw, err := k.readManifestRaw(ctx, id)
	gen := uint64(1)
	switch {
	case errors.Is(err, ErrNotFound):
		old = nil
	case errors.Is(err, ErrCorrupt): // garbled, or written by a newer version
		// It is overwritten, but first the chunks it may still own are
		// deleted, so that no fragment of the old entry stays behind. The
		// manifest is left until the new one replaces it, so a crash here
		// leaves it for the next put or delete to salvage again.
		old = nil
		refs, next := salvageGens(raw)
		for _, r := range refs {
			if err := k.purge(ctx, id, r); err != nil {
				return err
			}
		}
		// next is one of refs: a crash while writing it leaves chunks that
		// the next salvage of the same manifest finds.
		gen = next
	case err != nil:
		return err
	}
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
	enc, err := json.Marshal(&m)
	if err != nil {
		return fail(ErrCorrupt, "cannot encode the keychain manifest", nil)
	}
	if err := k.setVerified(ctx, id, string(enc)); err != nil {
		return err // the old entry (and its chunks) is intact
	}
	if m.Prev != nil {
		if err := k.cleanup(ctx, id, *m.Prev); err != nil {
			// The entry is saved; the next put finishes the clean-up.
			k.log.Debug("store: keychain clean-up deferred", slog.String("item", id), slog.String("error", err.Error()))
		}
	}
	k.labelEntry(ctx, id, &m, label)
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
	old, raw, err := k.readManifestRaw(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case errors.Is(err, ErrCorrupt): // garbled, or written by a newer version
		// Delete the chunks it may own first and the manifest last, so a
		// crash leaves the manifest for the next delete to salvage again.
		refs, _ := salvageGens(raw)
		for _, r := range refs {
			if err := k.purge(ctx, id, r); err != nil {
				return err
			}
		}
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
