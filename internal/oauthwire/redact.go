package oauthwire

import (
	"fmt"
	"log/slog"

	"github.com/tokenward/tokenward/internal/redact"
)

func (d DeviceAuth) redacted() *redact.Fields {
	return redact.Of("oauthwire.DeviceAuth").
		Secret("DeviceCode", d.DeviceCode != "").Secret("UserCode", d.UserCode != "").
		Show("VerificationURI", redact.URLString(d.VerificationURI)).
		Secret("VerificationURIComplete", d.VerificationURIComplete != "").
		Show("ExpiresIn", d.ExpiresIn).Show("Expiry", d.Expiry).Show("Interval", d.Interval)
}

// String describes d without the device code, the user code and
// VerificationURIComplete (which carries the user code).
func (d DeviceAuth) String() string { return d.redacted().String() }

// GoString is String, so that %#v prints no code either.
func (d DeviceAuth) GoString() string { return d.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (d DeviceAuth) Format(st fmt.State, verb rune) { redact.Format(st, verb, d.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (d DeviceAuth) LogValue() slog.Value { return d.redacted().LogValue() }
