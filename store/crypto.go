package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
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

	// maxFileSize bounds what is read of a token file: the largest entry,
	// encrypted.
	maxFileSize = int64(MaxEntrySize + encHdrLen + 64)
)

// sealer encrypts and decrypts entry files with a passphrase-derived key.
// Deriving a key costs tens of milliseconds on purpose (and a second or
// more on a loaded machine, or under the race detector), so keys are
// cached per salt and parameters, rewriting a file keeps its salt, new
// files take the salt of the files already there, and Open derives the keys
// a store will use before any Load or Save (prepare): the work is done once
// per process, and never inside an operation's deadline. A salt is taken
// over only from a file that opens with this passphrase: anyone who can
// write to the directory could otherwise plant a file whose salt every
// later file of this store would be written with.
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
// chooses the salt of new files: that of a file already there that opens
// (decrypts and authenticates) with this passphrase, else a new random
// one, whose key it derives too. Files it cannot read or parse, and files
// that do not open (another passphrase's, altered, or planted), are left
// for the operation that meets them; they choose nothing.
func (s *sealer) prepare(dir, ext string) error {
	var good []kdfParams          // salts of files that open, in directory order
	tried := map[kdfParams]bool{} // salts whose key was derived here
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ext) || strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		data, err := readSealed(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		kp, ok := s.parseHeader(data)
		if !ok || slices.Contains(good, kp) || (!tried[kp] && len(tried) == maxPrepared) {
			continue
		}
		tried[kp] = true
		if _, err := s.open(strings.TrimSuffix(name, ext), data); err == nil {
			good = append(good, kp)
		}
	}
	if len(good) == 0 {
		kp := kdfParams{logN: s.logN, r: scryptR, p: scryptP}
		if _, err := rand.Read(kp.salt[:]); err != nil {
			return unavailable(noRandomness, "", err)
		}
		if _, err := s.key(kp); err != nil {
			return err
		}
		good = append(good, kp)
	}
	s.mu.Lock()
	s.fresh = &good[0]
	s.mu.Unlock()
	return nil
}

// samePassphrase reports whether s and o seal with the same passphrase
// (both nil: plaintext files), comparing in constant time.
func (s *sealer) samePassphrase(o *sealer) bool {
	if s == nil || o == nil {
		return s == nil && o == nil
	}
	return subtle.ConstantTimeCompare(s.pass, o.pass) == 1
}

// readSealed reads a whole encrypted file, of at most the size a token
// file can have.
func readSealed(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxFileSize {
		return nil, fail(ErrCorrupt, "token file too large", nil)
	}
	return data, nil
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
// prev (the file's current content) when prev opens with this passphrase,
// and otherwise (no file, a corrupt one, one of another passphrase) those
// of new files.
func (s *sealer) seal(id string, plain, prev []byte) ([]byte, error) {
	kp, ok := s.parseHeader(prev)
	if ok {
		_, err := s.open(id, prev)
		ok = err == nil
	}
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
