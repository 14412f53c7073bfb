package client

import (
	"fmt"
	"log/slog"

	"github.com/tokenward/tokenward/internal/redact"
)

// The types below hold secrets (a client secret, a private key, a fixed
// access token, a device login's user code) or reach them, so each prints
// only the fields that are safe to show, through every printer: String
// (%v, %s), GoString (%#v), Format (every other verb) and LogValue (slog,
// whose JSON handler would otherwise marshal every exported field). See
// internal/redact.Fields.

func (c Options) redacted() *redact.Fields {
	return redact.Of("client.Options").
		Show("Issuer", c.Issuer).Show("Endpoints", c.Endpoints).Show("ClientID", c.ClientID).
		Secret("ClientSecret", c.ClientSecret != "").Secret("PrivateKey", c.PrivateKey != nil).Show("KeyID", c.KeyID).
		Show("AssertionAudience", c.AssertionAudience).Show("AuthMethod", c.AuthMethod).Show("Grant", c.Grant).Show("Scopes", c.Scopes).Show("Resources", c.Resources).
		Show("APIOrigins", c.APIOrigins).Show("RejectOtherOrigins", c.RejectOtherOrigins).
		Show("AllowInsecureLoopback", c.AllowInsecureLoopback).Show("Profile", c.Profile).
		Show("Store", c.Store != nil).Show("StoreMode", c.StoreMode).Secret("AccessToken", c.AccessToken != "").Show("AccessTokenEnv", c.AccessTokenEnv).
		Show("HTTP", c.HTTP).Show("RedirectHost", c.RedirectHost).Show("LoginTimeout", c.LoginTimeout).
		Show("AuthParams", paramNames(c.AuthParams)).Show("DeviceAuthParams", paramNames(c.DeviceAuthParams)).
		Show("TokenParams", paramNames(c.TokenParams)).Show("UsePAR", c.UsePAR)
}

// String describes c without its secrets: ClientSecret, PrivateKey and
// AccessToken show as [REDACTED] when set.
func (c Options) String() string { return c.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (c Options) GoString() string { return c.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (c Options) Format(st fmt.State, verb rune) { redact.Format(st, verb, c.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (c Options) LogValue() slog.Value { return c.redacted().LogValue() }

func (h HTTPSettings) redacted() *redact.Fields {
	return redact.Of("client.HTTPSettings").
		Show("Timeout", h.Timeout).Show("RetryBudget", h.RetryBudget).Show("RetryWaitMin", h.RetryWaitMin).
		Show("RetryWaitMax", h.RetryWaitMax).Show("RetryMax", h.RetryMax).
		Secret("TLSConfig", h.TLSConfig != nil).Show("Proxy", h.Proxy != nil).Show("Transport", h.Transport != nil)
}

// String describes h; a TLSConfig (which may hold a client certificate's
// private key) shows only as [REDACTED] when set.
func (h HTTPSettings) String() string { return h.redacted().String() }

// GoString is String, so that %#v prints no key either.
func (h HTTPSettings) GoString() string { return h.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (h HTTPSettings) Format(st fmt.State, verb rune) { redact.Format(st, verb, h.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (h HTTPSettings) LogValue() slog.Value { return h.redacted().LogValue() }

func (c *Client) redacted() *redact.Fields {
	f := redact.Of("client.Client")
	if c == nil || c.grant == nil {
		return f
	}
	f.Show("Issuer", c.cfg.Issuer).Show("ClientID", c.cfg.ClientID).Show("Grant", c.cfg.Grant).
		Show("Profile", c.cfg.Profile).Show("APIOrigins", c.origins).Secret("AccessToken", c.static != nil)
	if c.grant.store != nil {
		f.Show("Store", c.grant.store.Status().Mode)
	}
	return f
}

// String describes c without any secret (no token, no client secret).
func (c *Client) String() string { return c.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (c *Client) GoString() string { return c.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (c *Client) Format(st fmt.State, verb rune) { redact.Format(st, verb, c.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (c *Client) LogValue() slog.Value { return c.redacted().LogValue() }

func (r Resource) redacted() *redact.Fields {
	return redact.Of("client.Resource").Show("Resources", r.resources).Show("Origins", r.origins)
}

// String describes r: its resource indicators and origins, never its
// token nor its Client's secrets.
func (r Resource) String() string { return r.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (r Resource) GoString() string { return r.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (r Resource) Format(st fmt.State, verb rune) { redact.Format(st, verb, r.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (r Resource) LogValue() slog.Value { return r.redacted().LogValue() }

func (d DeviceCode) redacted() *redact.Fields {
	return redact.Of("client.DeviceCode").
		Secret("UserCode", d.UserCode != "").Show("VerificationURI", redact.URLString(d.VerificationURI)).
		Secret("VerificationURIComplete", d.VerificationURIComplete != "").Show("Expiry", d.Expiry)
}

// String describes d without the user code (a short-lived credential)
// nor VerificationURIComplete, which carries it.
func (d DeviceCode) String() string { return d.redacted().String() }

// GoString is String, so that %#v prints no code either.
func (d DeviceCode) GoString() string { return d.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (d DeviceCode) Format(st fmt.State, verb rune) { redact.Format(st, verb, d.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (d DeviceCode) LogValue() slog.Value { return d.redacted().LogValue() }
