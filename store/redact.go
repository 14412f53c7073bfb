package store

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/tokenward/tokenward/internal/redact"
)

// Entry and Options hold secrets (tokens, a DPoP key, a passphrase), so
// each prints only the fields that are safe to show, through every
// printer: String (%v, %s), GoString (%#v), Format (every other verb) and
// LogValue (slog, whose JSON handler would otherwise marshal every
// exported field). See internal/redact.Fields.

func (e Entry) redacted() *redact.Fields {
	var extra []string
	for k := range e.Extra {
		extra = append(extra, k)
	}
	slices.Sort(extra)
	return redact.Of("store.Entry").
		Secret("AccessToken", e.AccessToken != "").Show("TokenType", e.TokenType).
		Secret("RefreshToken", e.RefreshToken != "").Show("Expiry", e.Expiry).Show("Scope", e.Scope).
		Secret("IDToken", e.IDToken != "").Show("RefreshTokenExpiry", e.RefreshTokenExpiry).
		Show("Subject", e.Subject).Show("ExtraKeys", extra).Secret("KeyPair", len(e.KeyPair) > 0)
}

// String describes e without its secrets: the tokens and the key pair
// show as [REDACTED] when set, and of Extra only the keys are shown.
func (e Entry) String() string { return e.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (e Entry) GoString() string { return e.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (e Entry) Format(st fmt.State, verb rune) { redact.Format(st, verb, e.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (e Entry) LogValue() slog.Value { return e.redacted().LogValue() }

func (o Options) redacted() *redact.Fields {
	return redact.Of("store.Options").
		Show("Mode", o.Mode).Show("Service", o.Service).Show("Backend", o.Backend != nil).Show("Dir", o.Dir).
		Show("LockDir", o.LockDir).Secret("Passphrase", o.Passphrase != "").Show("Timeout", o.Timeout).
		Show("LockTimeout", o.LockTimeout)
}

// String describes o without the passphrase, which shows as [REDACTED]
// when set.
func (o Options) String() string { return o.redacted().String() }

// GoString is String, so that %#v prints no passphrase either.
func (o Options) GoString() string { return o.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (o Options) Format(st fmt.State, verb rune) { redact.Format(st, verb, o.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (o Options) LogValue() slog.Value { return o.redacted().LogValue() }
