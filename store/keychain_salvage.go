package store

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
)

// Salvage of an unreadable manifest. Chunks are named by generation, and
// only the manifest says which generations exist; when it cannot be parsed
// (garbled, or written by a newer version of tokenward) its chunks would be
// orphaned, token fragments left in the keychain after a logout. So the
// generation numbers are recovered from its text where possible (future
// manifest versions must keep "gen", "n" and "prev" with their meaning in
// version 1), and the first probeGens generations are probed as well.
const (
	probeGens    = 4 // generations 1..probeGens are always probed
	maxTextGens  = 4 // generation numbers taken from text that is not JSON
	maxSalvaged  = 2*maxTextGens + probeGens
	maxGenNumber = 1<<63 - 1
)

var genInText = regexp.MustCompile(`"gen"\s*:\s*([0-9]{1,19})`)

// salvageGens returns the generations whose chunks an unreadable manifest
// (its text raw) may own. N, when known from the text, is the chunk count;
// 0 means unknown, and purge then finds chunks only as a contiguous run
// from chunk 0. Each generation's successor is included: a put that
// crashed before its manifest write leaves chunks there. next is the
// generation a put that replaces the manifest writes: the successor of the
// highest generation found in the text, or 1; it is among refs, so if that
// put crashes before its manifest write, the next salvage of the same
// unreadable manifest finds what it wrote.
func salvageGens(raw string) (refs []genRef, next uint64) {
	next = 1
	add := func(gen uint64, n int) {
		if gen == 0 || gen > maxGenNumber || len(refs) >= maxSalvaged {
			return
		}
		n = min(max(n, 0), maxChunks)
		for i := range refs {
			if refs[i].Gen == gen {
				refs[i].N = max(refs[i].N, n)
				return
			}
		}
		refs = append(refs, genRef{Gen: gen, N: n})
	}
	var loose struct { // any version; unknown fields ignored
		Gen  uint64  `json:"gen"`
		N    int     `json:"n"`
		Prev *genRef `json:"prev"`
	}
	if json.Unmarshal([]byte(raw), &loose) == nil {
		add(loose.Gen, loose.N)
		if loose.Prev != nil {
			add(loose.Prev.Gen, loose.Prev.N)
		}
	} else {
		for _, m := range genInText.FindAllStringSubmatch(raw, maxTextGens) {
			if g, err := strconv.ParseUint(m[1], 10, 64); err == nil {
				add(g, 0)
			}
		}
	}
	for _, r := range slices.Clone(refs) {
		add(r.Gen+1, 0)
		next = max(next, r.Gen+1)
	}
	for g := uint64(1); g <= probeGens; g++ {
		add(g, 0)
	}
	return refs, next
}

// purge deletes the chunks of generation r.Gen that can be found without a
// readable manifest. First the contiguous run from chunk 0 (sweep: read
// ahead, delete from the highest down, so a crash leaves a shorter run from
// chunk 0); then, when r.N is known, the suffix an interrupted clean-up
// (which deletes in ascending order) may have left below r.N (cleanup:
// present if chunk r.N-1 is). r.N comes from a manifest that failed to
// parse, so it is only a hint: an overstated one costs one read.
func (k *keychain) purge(ctx context.Context, id string, r genRef) error {
	if err := k.sweep(ctx, id, r.Gen, 0); err != nil {
		return err
	}
	return k.cleanup(ctx, id, r)
}
