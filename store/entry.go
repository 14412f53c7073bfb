package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// Entry is what the store keeps for one credential: the token set of the
// last token response plus what is needed to use it later. It is stored in
// tokenward's own versioned schema, never as a raw oauth2.Token dump: a
// dump keeps only oauth2.Token's exported fields and drops the ID token,
// the scope and every other extra of the response, and its format would
// change with the library's. Every field here survives a round trip.
type Entry struct {
	// AccessToken, TokenType and RefreshToken are the token response's fields.
	AccessToken, TokenType, RefreshToken string
	// Expiry is when the access token expires (UTC on load); zero if unknown.
	Expiry time.Time
	// Scope is the granted scope, if the server said.
	Scope string
	// IDToken is the OpenID Connect ID token, if any.
	IDToken string
	// RefreshTokenExpiry is when the refresh token expires; zero if unknown.
	RefreshTokenExpiry time.Time
	// Subject is the subject the tokens belong to, if known (for status).
	Subject string
	// Extra holds other response fields worth keeping. An empty map loads as nil.
	Extra map[string]string
	// KeyPair is the credential's proof-of-possession (DPoP) private key in
	// PKCS#8 form, a secret: EntryFromToken takes it from the token's
	// extras (internal/tokenx KeyDPoPKey) and Token puts it back there. It
	// may be nil; an empty slice loads as nil.
	KeyPair []byte
}

// extraKeys are the token-response fields, besides those Entry has fields
// for, that EntryFromToken keeps in Entry.Extra when they are strings.
var extraKeys = []string{"issued_token_type"}

// EntryFromToken returns the entry for t: its exported fields plus, from its
// extras, id_token, scope, the refresh token's expiry and the subject (see
// internal/tokenx), and issued_token_type. It returns nil for a nil token.
func EntryFromToken(t *oauth2.Token) *Entry {
	if t == nil {
		return nil
	}
	e := &Entry{
		AccessToken:        t.AccessToken,
		TokenType:          t.TokenType,
		RefreshToken:       t.RefreshToken,
		Scope:              tokenx.Scope(t),
		IDToken:            tokenx.IDToken(t),
		RefreshTokenExpiry: utc(tokenx.RefreshTokenExpiry(t)),
		Subject:            tokenx.String(t, tokenx.KeySubject),
	}
	if k := tokenx.DPoPKey(t); len(k) > 0 {
		e.KeyPair = bytes.Clone(k)
	}
	if !t.Expiry.IsZero() {
		e.Expiry = t.Expiry.UTC()
	}
	for _, k := range extraKeys {
		if v := tokenx.String(t, k); v != "" {
			if e.Extra == nil {
				e.Extra = map[string]string{}
			}
			e.Extra[k] = v
		}
	}
	return e
}

// Token returns the entry as an *oauth2.Token: the exported fields, and as
// extras (oauth2.Token.WithExtra) id_token, scope, the refresh token's
// expiry and subject under internal/tokenx's keys, and every Extra field.
// It is the inverse of EntryFromToken. It returns nil for a nil entry.
func (e *Entry) Token() *oauth2.Token {
	if e == nil {
		return nil
	}
	t := &oauth2.Token{AccessToken: e.AccessToken, TokenType: e.TokenType, RefreshToken: e.RefreshToken, Expiry: e.Expiry}
	extra := make(map[string]any, len(e.Extra)+4)
	for k, v := range e.Extra {
		extra[k] = v
	}
	if e.IDToken != "" {
		extra["id_token"] = e.IDToken
	}
	if e.Scope != "" {
		extra["scope"] = e.Scope
	}
	if !e.RefreshTokenExpiry.IsZero() {
		extra[tokenx.KeyRefreshTokenExpiry] = e.RefreshTokenExpiry
	}
	if e.Subject != "" {
		extra[tokenx.KeySubject] = e.Subject
	}
	if len(e.KeyPair) > 0 {
		extra[tokenx.KeyDPoPKey] = bytes.Clone(e.KeyPair)
	}
	return t.WithExtra(extra)
}

// clone returns a deep copy of e.
func (e *Entry) clone() *Entry {
	c := *e
	c.Extra = maps.Clone(e.Extra)
	if e.KeyPair != nil {
		c.KeyPair = bytes.Clone(e.KeyPair)
	}
	return &c
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// schemaVersion is the version of the entry schema this package writes.
const schemaVersion = 1

// MaxEntrySize is the largest encoded entry any mode stores (256 KiB);
// larger entries fail with ErrTooLarge.
const MaxEntrySize = 256 << 10

// envelope is the stored form of an Entry (schema version 1):
//
//	{"v":1,"name":"...","access_token":"...","token_type":"Bearer",
//	 "refresh_token":"...","expiry":"2025-01-02T03:04:05Z", ...}
//
// Times are RFC 3339 in UTC with nanoseconds; empty fields are omitted. The
// name is stored inside and compared on load, so an entry filed under the
// wrong item is detected rather than used.
type envelope struct {
	V                  int               `json:"v"`
	Name               string            `json:"name"`
	AccessToken        string            `json:"access_token,omitempty"`
	TokenType          string            `json:"token_type,omitempty"`
	RefreshToken       string            `json:"refresh_token,omitempty"`
	Expiry             string            `json:"expiry,omitempty"`
	Scope              string            `json:"scope,omitempty"`
	IDToken            string            `json:"id_token,omitempty"`
	RefreshTokenExpiry string            `json:"refresh_token_expiry,omitempty"`
	Subject            string            `json:"subject,omitempty"`
	Extra              map[string]string `json:"extra,omitempty"`
	KeyPair            []byte            `json:"key_pair,omitempty"`
}

// encodeEntry returns the stored form of e under name. It refuses entries
// that would not come back identical (ErrInvalidEntry).
func encodeEntry(name string, e *Entry) ([]byte, error) {
	if e == nil {
		return nil, fail(ErrInvalidEntry, "nil entry", nil)
	}
	strs := []string{e.AccessToken, e.TokenType, e.RefreshToken, e.Scope, e.IDToken, e.Subject}
	for k, v := range e.Extra {
		strs = append(strs, k, v)
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return nil, fail(ErrInvalidEntry, "a field is not valid UTF-8", nil)
		}
	}
	exp, err := formatTime(e.Expiry)
	if err != nil {
		return nil, err
	}
	rtExp, err := formatTime(e.RefreshTokenExpiry)
	if err != nil {
		return nil, err
	}
	env := envelope{
		V: schemaVersion, Name: name,
		AccessToken: e.AccessToken, TokenType: e.TokenType, RefreshToken: e.RefreshToken,
		Expiry: exp, Scope: e.Scope, IDToken: e.IDToken, RefreshTokenExpiry: rtExp,
		Subject: e.Subject, Extra: e.Extra, KeyPair: e.KeyPair,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&env); err != nil {
		return nil, fail(ErrInvalidEntry, "cannot encode", nil)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func formatTime(t time.Time) (string, error) {
	if t.IsZero() {
		return "", nil
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return "", fail(ErrInvalidEntry, "time outside years 1-9999", nil)
	}
	return t.Format(time.RFC3339Nano), nil
}

// decodeEntry parses a stored entry and checks that it belongs to name. It
// returns the whole entry or an error matching ErrCorrupt (or
// ErrUnsupportedVersion, which also matches ErrCorrupt); never part of one.
func decodeEntry(name string, data []byte) (*Entry, error) {
	if len(data) > MaxEntrySize {
		return nil, fail(ErrCorrupt, "entry larger than MaxEntrySize", nil)
	}
	var probe struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fail(ErrCorrupt, "not a JSON object", nil)
	}
	v, err := strconv.ParseInt(string(probe.V), 10, 64)
	if err != nil {
		return nil, fail(ErrCorrupt, "missing or malformed schema version", nil)
	}
	if v > schemaVersion {
		return nil, fail(ErrUnsupportedVersion, fmt.Sprintf("schema version %d, this tokenward reads up to %d", v, schemaVersion), nil)
	}
	if v < 1 {
		return nil, fail(ErrCorrupt, "invalid schema version", nil)
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fail(ErrCorrupt, "does not match schema version 1", nil)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail(ErrCorrupt, "trailing data after the entry", nil)
	}
	if env.Name != name {
		return nil, fail(ErrCorrupt, "stored under another name", nil)
	}
	exp, err := parseTime(env.Expiry)
	if err != nil {
		return nil, err
	}
	rtExp, err := parseTime(env.RefreshTokenExpiry)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		AccessToken: env.AccessToken, TokenType: env.TokenType, RefreshToken: env.RefreshToken,
		Expiry: exp, Scope: env.Scope, IDToken: env.IDToken, RefreshTokenExpiry: rtExp,
		Subject: env.Subject, Extra: env.Extra, KeyPair: env.KeyPair,
	}
	if len(e.Extra) == 0 {
		e.Extra = nil
	}
	if len(e.KeyPair) == 0 {
		e.KeyPair = nil
	}
	return e, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fail(ErrCorrupt, "malformed time", nil)
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 || t.IsZero() {
		return time.Time{}, fail(ErrCorrupt, "time out of range", nil)
	}
	return t, nil
}
