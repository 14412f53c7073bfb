package dpop

import (
	"fmt"
	"log/slog"

	"github.com/tokenward/tokenward/internal/redact"
)

// fields describes k for its printed forms: the algorithm and the
// thumbprint (both public: the thumbprint is sent in token requests and
// inside access tokens), and the private key as "[REDACTED]".
func (k *Key) fields() *redact.Fields {
	return redact.Of("dpop.Key").Show("Alg", k.alg).Show("Thumbprint", k.jkt).Secret("PrivateKey", true)
}

// String describes the key by its algorithm and thumbprint only.
func (k *Key) String() string {
	if k == nil {
		return "dpop.Key(nil)"
	}
	return k.fields().String()
}

// GoString is String, so that %#v does not dump the private key.
func (k *Key) GoString() string { return k.String() }

// Format writes String for every verb (%x, %d and the rest included),
// quoted for %q.
func (k *Key) Format(st fmt.State, verb rune) { redact.Format(st, verb, k.String()) }

// LogValue gives slog the algorithm and thumbprint only.
func (k *Key) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("dpop.Key(nil)")
	}
	return k.fields().LogValue()
}

// fields describes p with its access token hidden. The URL is reduced to
// scheme, host and path, since a query may hold secrets too.
func (p ProofParams) fields() *redact.Fields {
	u := p.URL
	if p.Target != nil {
		u = p.Target.String()
	}
	return redact.Of("dpop.ProofParams").Show("Method", p.Method).Show("URL", redact.URLString(u)).
		Show("Now", p.Now).Show("Nonce", p.Nonce).Secret("AccessToken", p.AccessToken != "")
}

// String describes p without its access token.
func (p ProofParams) String() string { return p.fields().String() }

// GoString is String, so that %#v does not show the access token.
func (p ProofParams) GoString() string { return p.String() }

// Format writes String for every verb, quoted for %q.
func (p ProofParams) Format(st fmt.State, verb rune) { redact.Format(st, verb, p.String()) }

// LogValue gives slog p's fields without the access token.
func (p ProofParams) LogValue() slog.Value { return p.fields().LogValue() }
