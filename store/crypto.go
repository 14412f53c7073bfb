package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/scrypt"
)

// Encrypted file format (ModeEncryptedFile):
//
//	"TWENC\x01" | logN | r | p | salt[16] | nonce[12] | AES-256-GCM(entry)
//
// The key is scrypt(passphrase, salt, N=2^logN, r, p). The header and the
// item id are authenticated as additional data, so a file moved to another
// name, an altered parameter or a wrong passphrase all fail the GCM tag
// (ErrCorrupt) and yield no plaintext at all.
const (
	encMagic  = "TWENC\x01"
	saltLen   = 16
	nonceLen  = 12
	encHdrLen = len(encMagic) + 3 + saltLen + nonceLen
	scryptR   = 8
	scryptP   = 1
	minLogN   = 10 // the cost tests write with, through Options.kdfLogN
)

// sealer encrypts and decrypts entry files with a passphrase-derived key.
// Deriving a key costs tens of milliseconds on purpose (and a second or
// more on a loaded machine, or under the race detector), so keys are
// cached per salt and parameters, rewriting a file keeps its salt, new
// files take the salt of the files already there, and Open derives the keys
// a store will use before any Load or Save (prepare): the work is done once
// per process, and never inside an operation's deadline.
type sealer struct {
	pass []byte
	logN uint8

	mu      sync.Mutex // guards keys, fresh and derived; held while deriving
	keys    map[kdfParams][]byte
	fresh   *kdfParams // the salt and parameters of new files; nil: a random salt each
	derived int        // keys derived so far (tests)
}

type kdfParams struct {
	salt       [saltLen]byte
	logN, r, p uint8
}

func newSealer(pass string, logN uint8) *sealer {
	return &sealer{pass: []byte(pass), logN: logN, keys: map[kdfParams][]byte{}}
}

// maxPrepared bounds how many different salts prepare derives keys for:
// a directory written by this code has one (or a few, from older
// versions, which gave every file a salt of its own).
const maxPrepared = 8

// prepare derives, ahead of any Load or Save, the keys of the encrypted
// files in dir (files ending in ext; their headers name their salts) and
// chooses the salt of new files: that of a file already there, else a new
// random one, whose key it derives too. Files it cannot read or parse are
// left for the operation that meets them.
func (s *sealer) prepare(dir, ext string) error {
	var found []kdfParams
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if len(found) == maxPrepared {
			break
		}
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ext) || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		hdr, err := readHeader(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if kp, ok := s.parseHeader(hdr); ok && !slices.Contains(found, kp) {
			found = append(found, kp)
		}
	}
	if len(found) == 0 {
		kp := kdfParams{logN: s.logN, r: scryptR, p: scryptP}
		if _, err := rand.Read(kp.salt[:]); err != nil {
			return unavailable(noRandomness, "", err)
		}
		found = append(found, kp)
	}
	for _, kp := range found {
		if _, err := s.key(kp); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.fresh = &found[0]
	s.mu.Unlock()
	return nil
}

// readHeader reads the first encHdrLen bytes of the file at path.
func readHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, encHdrLen)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, err
	}
	return hdr, nil
}

func (s *sealer) key(kp kdfParams) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[kp]; ok {
		return k, nil
	}
	k, err := scrypt.Key(s.pass, kp.salt[:], 1<<kp.logN, int(kp.r), int(kp.p), 32)
	if err != nil {
		return nil, fail(ErrCorrupt, "invalid key-derivation parameters", nil)
	}
	s.keys[kp] = k
	s.derived++
	return k, nil
}

// newFileParams returns the salt and parameters of a new file.
func (s *sealer) newFileParams() (kdfParams, error) {
	s.mu.Lock()
	fresh := s.fresh
	s.mu.Unlock()
	if fresh != nil {
		return *fresh, nil
	}
	kp := kdfParams{logN: s.logN, r: scryptR, p: scryptP}
	if _, err := rand.Read(kp.salt[:]); err != nil {
		return kp, unavailable(noRandomness, "", err)
	}
	return kp, nil
}

func aad(hdr []byte, id string) []byte {
	return append(append([]byte{}, hdr...), "tokenward/store/file/v1\x00"+id...)
}

// seal encrypts plain for item id. It reuses the salt and parameters of
// prev (the file's current content) when prev has a valid header.
func (s *sealer) seal(id string, plain, prev []byte) ([]byte, error) {
	kp, ok := s.parseHeader(prev)
	if !ok {
		var err error
		if kp, err = s.newFileParams(); err != nil {
			return nil, err
		}
	}
	key, err := s.key(kp)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, 0, encHdrLen)
	hdr = append(hdr, encMagic...)
	hdr = append(hdr, kp.logN, kp.r, kp.p)
	hdr = append(hdr, kp.salt[:]...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, unavailable(noRandomness, "", err)
	}
	hdr = append(hdr, nonce...)
	return gcm.Seal(hdr, nonce, plain, aad(hdr, id)), nil
}

// open decrypts a file of item id: the whole plaintext or ErrCorrupt.
func (s *sealer) open(id string, file []byte) ([]byte, error) {
	if len(file) < encHdrLen+16 || string(file[:len(encMagic)]) != encMagic {
		return nil, fail(ErrCorrupt, "not a tokenward encrypted file", nil)
	}
	kp, ok := s.parseHeader(file)
	if !ok {
		return nil, fail(ErrCorrupt, "unexpected key-derivation parameters in the file header", nil)
	}
	key, err := s.key(kp)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	hdr := file[:encHdrLen]
	plain, err := gcm.Open(nil, hdr[encHdrLen-nonceLen:], file[encHdrLen:], aad(hdr, id))
	if err != nil {
		return nil, fail(ErrCorrupt, "cannot decrypt: wrong passphrase, or the file was altered or moved", nil)
	}
	return plain, nil
}

// parseHeader returns the key-derivation parameters of an encrypted file's
// header. It accepts only the parameters a writer uses: r=8, p=1 and
// logN=15 (or, in tests, the cost set through Options.kdfLogN). The header
// is authenticated only by the key derived from it, so before that check a
// corrupt or crafted header could otherwise make a Load derive with
// whatever cost it names (N=2^20, r=16 is 2 GiB of memory).
func (s *sealer) parseHeader(b []byte) (kdfParams, bool) {
	var kp kdfParams
	if len(b) < encHdrLen || string(b[:len(encMagic)]) != encMagic {
		return kp, false
	}
	p := b[len(encMagic):]
	kp.logN, kp.r, kp.p = p[0], p[1], p[2]
	copy(kp.salt[:], p[3:3+saltLen])
	if (kp.logN != defaultKDFLogN && kp.logN != s.logN) || kp.r != scryptR || kp.p != scryptP {
		return kp, false
	}
	return kp, true
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fail(ErrCorrupt, "bad key", nil)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fail(ErrCorrupt, "bad key", nil)
	}
	return gcm, nil
}
