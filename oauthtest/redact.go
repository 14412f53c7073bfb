package oauthtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/tokenward/tokenward/internal/redact"
)

// The types below hold credentials (a client secret, a token, a user
// code) or reach them, so each prints only the fields that are safe to
// show, through every printer: String (%v, %s), GoString (%#v), Format
// (every other verb, which would otherwise print the raw fields) and
// LogValue (log/slog, whose JSON handler would otherwise marshal every
// exported field). The value types also implement MarshalJSON, because
// encoding/json, which slog's JSON handler uses for values inside slices
// and maps, calls no LogValue. A test reads the credentials from the
// fields; a log line or a failure message that prints the whole value
// never shows them.

// marshalJSON renders the fields f shows as a JSON object.
func marshalJSON(f *redact.Fields) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, a := range f.LogValue().Group() {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(a.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(a.Value.Resolve().Any())
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (c Client) redacted() *redact.Fields {
	return redact.Of("oauthtest.Client").
		Show("ID", c.ID).Secret("Secret", c.Secret != "").Show("AuthMethod", c.method()).
		Show("PublicKey", c.PublicKey != nil).Show("RedirectURIs", c.RedirectURIs).
		Show("Scopes", c.Scopes).Show("Grants", c.Grants)
}

// String describes c; its Secret shows as [REDACTED] when set.
func (c Client) String() string { return c.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (c Client) GoString() string { return c.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (c Client) Format(st fmt.State, verb rune) { redact.Format(st, verb, c.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (c Client) LogValue() slog.Value { return c.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (c Client) MarshalJSON() ([]byte, error) { return marshalJSON(c.redacted()) }

func (c Config) redacted() *redact.Fields {
	// Each client as its own redacted string: a []Client handed to slog's
	// JSON handler would be marshalled field by field, secret included.
	clients := make([]string, len(c.Clients))
	for i, cl := range c.Clients {
		clients[i] = cl.String()
	}
	return redact.Of("oauthtest.Config").
		Show("Clients", clients).Show("TLS", c.TLS).Show("InMemory", c.InMemory).
		Show("ClockOffset", c.ClockOffset).Show("AccessTokenLifetime", c.AccessTokenLifetime).
		Show("RefreshTokenLifetime", c.RefreshTokenLifetime).Show("AccessTokenSize", c.AccessTokenSize).
		Show("TokenType", c.TokenType).Show("OmitTokenType", c.OmitTokenType).Show("ExpiresIn", c.ExpiresIn.String()).
		Show("IDToken", c.IDToken).Show("Subject", c.Subject).Show("FormResponse", c.FormResponse).
		Show("DisableRotation", c.DisableRotation).Show("ReuseGrace", c.ReuseGrace).
		Show("DisableReuseDetection", c.DisableReuseDetection).Show("Resources", c.Resources).
		Show("DefaultResource", c.DefaultResource).Show("DeviceInterval", c.DeviceInterval).
		Show("DevicePendingPolls", c.DevicePendingPolls).Show("DeviceManualApproval", c.DeviceManualApproval).
		Show("DisabledEndpoints", c.DisabledEndpoints).Show("RequirePAR", c.RequirePAR).Show("NoSession", c.NoSession).
		Show("DPoP", c.DPoP.String()).Show("DPoPSigningAlgs", c.DPoPSigningAlgs).
		Show("DPoPNonceAS", c.DPoPNonceAS).Show("DPoPNonceAPI", c.DPoPNonceAPI)
}

// String describes c's main settings; client secrets show as [REDACTED].
func (c Config) String() string { return c.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (c Config) GoString() string { return c.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (c Config) Format(st fmt.State, verb rune) { redact.Format(st, verb, c.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (c Config) LogValue() slog.Value { return c.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (c Config) MarshalJSON() ([]byte, error) { return marshalJSON(c.redacted()) }

func (s *Server) redacted() *redact.Fields {
	f := redact.Of("oauthtest.Server")
	if s == nil {
		return f
	}
	// Only what New fixed: no lock taken, nothing a request changes.
	return f.Show("Issuer", s.issuer).Show("TLS", s.cert != nil).Show("InMemory", s.inMemory)
}

// String describes s by its issuer URL and mode, never the tokens and
// secrets it holds.
func (s *Server) String() string { return s.redacted().String() }

// GoString is String, so that %#v prints no secret either.
func (s *Server) GoString() string { return s.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (s *Server) Format(st fmt.State, verb rune) { redact.Format(st, verb, s.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (s *Server) LogValue() slog.Value { return s.redacted().LogValue() }

func (a *API) redacted() *redact.Fields {
	f := redact.Of("oauthtest.API")
	if a == nil {
		return f
	}
	return f.Show("URL", a.url).Show("Resource", a.resource)
}

// String describes a by its URL and resource, never the tokens it was
// shown.
func (a *API) String() string { return a.redacted().String() }

// GoString is String, so that %#v prints no token either.
func (a *API) GoString() string { return a.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (a *API) Format(st fmt.State, verb rune) { redact.Format(st, verb, a.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (a *API) LogValue() slog.Value { return a.redacted().LogValue() }

func (t *Trap) redacted() *redact.Fields {
	f := redact.Of("oauthtest.Trap")
	if t == nil {
		return f
	}
	return f.Show("URL", t.url)
}

// String describes t by its URL, never the credentials it recorded.
func (t *Trap) String() string { return t.redacted().String() }

// GoString is String, so that %#v prints no credential either.
func (t *Trap) GoString() string { return t.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (t *Trap) Format(st fmt.State, verb rune) { redact.Format(st, verb, t.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (t *Trap) LogValue() slog.Value { return t.redacted().LogValue() }

func (r APIRequest) redacted() *redact.Fields {
	return redact.Of("oauthtest.APIRequest").
		Show("Method", r.Method).Show("Path", r.Path).Secret("Token", r.Token != "").
		Show("Scheme", r.Scheme).Show("DPoPJKT", r.DPoPJKT).
		Show("Audience", r.Audience).Show("Status", r.Status).Show("Outcome", r.Outcome)
}

// String describes r; its Token shows as [REDACTED] when set.
func (r APIRequest) String() string { return r.redacted().String() }

// GoString is String, so that %#v prints no token either.
func (r APIRequest) GoString() string { return r.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (r APIRequest) Format(st fmt.State, verb rune) { redact.Format(st, verb, r.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (r APIRequest) LogValue() slog.Value { return r.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (r APIRequest) MarshalJSON() ([]byte, error) { return marshalJSON(r.redacted()) }

func (r TrapRequest) redacted() *redact.Fields {
	return redact.Of("oauthtest.TrapRequest").
		Show("Method", r.Method).Show("Path", r.Path).
		Secret("Authorization", r.Authorization != "").Secret("Body", r.Body != "")
}

// String describes r; its Authorization header and Body, which may carry
// a credential that followed a redirect, show as [REDACTED] when set.
func (r TrapRequest) String() string { return r.redacted().String() }

// GoString is String, so that %#v prints no credential either.
func (r TrapRequest) GoString() string { return r.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (r TrapRequest) Format(st fmt.State, verb rune) { redact.Format(st, verb, r.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (r TrapRequest) LogValue() slog.Value { return r.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (r TrapRequest) MarshalJSON() ([]byte, error) { return marshalJSON(r.redacted()) }

func (p Presentation) redacted() *redact.Fields {
	return redact.Of("oauthtest.Presentation").
		Secret("Token", p.Token != "").Show("At", p.At).Show("Outcome", p.Outcome)
}

// String describes p; its Token shows as [REDACTED].
func (p Presentation) String() string { return p.redacted().String() }

// GoString is String, so that %#v prints no token either.
func (p Presentation) GoString() string { return p.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (p Presentation) Format(st fmt.State, verb rune) { redact.Format(st, verb, p.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (p Presentation) LogValue() slog.Value { return p.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (p Presentation) MarshalJSON() ([]byte, error) { return marshalJSON(p.redacted()) }

func (d DeviceInfo) redacted() *redact.Fields {
	return redact.Of("oauthtest.DeviceInfo").
		Secret("UserCode", d.UserCode != "").Show("ClientID", d.ClientID).Show("State", d.State).
		Show("Polls", d.Polls).Show("Interval", d.Interval).Show("Expiry", d.Expiry)
}

// String describes d; its UserCode (a short-lived credential) shows as
// [REDACTED].
func (d DeviceInfo) String() string { return d.redacted().String() }

// GoString is String, so that %#v prints no code either.
func (d DeviceInfo) GoString() string { return d.String() }

// Format implements [fmt.Formatter]: every verb prints String.
func (d DeviceInfo) Format(st fmt.State, verb rune) { redact.Format(st, verb, d.String()) }

// LogValue implements [slog.LogValuer]: the fields String shows.
func (d DeviceInfo) LogValue() slog.Value { return d.redacted().LogValue() }

// MarshalJSON implements [json.Marshaler]: the fields String shows.
func (d DeviceInfo) MarshalJSON() ([]byte, error) { return marshalJSON(d.redacted()) }
