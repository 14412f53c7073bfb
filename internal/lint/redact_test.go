package lint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

// exportedTypes is every exported type of the packages in typePackages
// (TestExportedTypesListed keeps the list complete, so a new type cannot
// escape TestExportedTypesRedact).
var exportedTypes = []reflect.Type{
	reflect.TypeFor[client.AuthMethod](), reflect.TypeFor[client.AuthorizationError](), reflect.TypeFor[client.Client](),
	reflect.TypeFor[client.DeviceCode](), reflect.TypeFor[client.EndpointError](), reflect.TypeFor[client.Endpoints](),
	reflect.TypeFor[client.Event](), reflect.TypeFor[client.Grant](),
	reflect.TypeFor[client.HTTPSettings](), reflect.TypeFor[client.LoginOptions](), reflect.TypeFor[client.Options](), reflect.TypeFor[client.LogoutError](), reflect.TypeFor[client.LogoutResult](),
	reflect.TypeFor[client.RateLimitError](), reflect.TypeFor[client.Resource](), reflect.TypeFor[client.Status](),

	reflect.TypeFor[refresh.Cache](), reflect.TypeFor[refresh.Error](), reflect.TypeFor[refresh.Event](),
	reflect.TypeFor[refresh.EventKind](), reflect.TypeFor[refresh.Locker](), reflect.TypeFor[refresh.Options](),
	reflect.TypeFor[refresh.Persister](), reflect.TypeFor[refresh.Upstream](), reflect.TypeFor[refresh.UpstreamFunc](),

	reflect.TypeFor[store.Backend](), reflect.TypeFor[store.Entry](), reflect.TypeFor[store.Key](),
	reflect.TypeFor[store.Mode](), reflect.TypeFor[store.Options](), reflect.TypeFor[store.Status](),
	reflect.TypeFor[store.Store](),

	reflect.TypeFor[transport.Feedback](), reflect.TypeFor[transport.BearerError](), reflect.TypeFor[transport.Challenge](), reflect.TypeFor[transport.Invalidator](), reflect.TypeFor[transport.Options](),
	reflect.TypeFor[transport.RetryOptions](), reflect.TypeFor[transport.Source](), reflect.TypeFor[transport.SourceFunc](),
	reflect.TypeFor[transport.Transport](),

	reflect.TypeFor[oauthtest.API](), reflect.TypeFor[oauthtest.APIRequest](), reflect.TypeFor[oauthtest.APIStats](),
	reflect.TypeFor[oauthtest.Client](), reflect.TypeFor[oauthtest.Config](), reflect.TypeFor[oauthtest.DeviceInfo](), reflect.TypeFor[oauthtest.EndpointRequest](),
	reflect.TypeFor[oauthtest.ExpiresInMode](), reflect.TypeFor[oauthtest.Fault](), reflect.TypeFor[oauthtest.FaultKind](),
	reflect.TypeFor[oauthtest.Grant](), reflect.TypeFor[oauthtest.Presentation](), reflect.TypeFor[oauthtest.Server](),
	reflect.TypeFor[oauthtest.Stats](), reflect.TypeFor[oauthtest.TokenInfo](), reflect.TypeFor[oauthtest.Trap](),
	reflect.TypeFor[oauthtest.TrapRequest](), reflect.TypeFor[oauthtest.DPoPMode](),

	reflect.TypeFor[dpop.Challenge](), reflect.TypeFor[dpop.Key](), reflect.TypeFor[dpop.NonceCache](), reflect.TypeFor[dpop.ProofParams](),

	reflect.TypeFor[oauthwire.DeviceAuth](), reflect.TypeFor[oauthwire.DevicePoll](), reflect.TypeFor[oauthwire.Discovery](),
	reflect.TypeFor[oauthwire.Error](),
	reflect.TypeFor[redact.Fields](), reflect.TypeFor[redact.HeaderValue](), reflect.TypeFor[redact.URLValue](),
}

// typePackages are the packages whose exported types must be listed: the
// public ones (oauthtest included: its users print its records in their
// own tests and logs) and the internal ones whose values the SDK's own
// code logs or wraps into errors. The rest of internal/ is test machinery
// (the fake keychains, canaries, scanners).
var typePackages = []string{"client", "refresh", "store", "transport", "oauthtest", "bench/stall", "bench/stampede",
	"internal/oauthwire", "internal/redact", "internal/tokenx", "internal/twerr", "internal/dpop"}

// TestExportedTypesListed fails when exportedTypes misses an exported type
// of typePackages, or lists one that is gone.
func TestExportedTypesListed(t *testing.T) {
	t.Parallel()
	var declared []string
	for _, dir := range typePackages {
		files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range files {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.TYPE {
					for _, s := range g.Specs {
						// An alias (type A = B) is B, listed under B's package.
						if ts := s.(*ast.TypeSpec); ts.Name.IsExported() && !ts.Assign.IsValid() {
							declared = append(declared, f.Name.Name+"."+ts.Name.Name)
						}
					}
				}
			}
		}
	}
	var listed []string
	for _, typ := range exportedTypes {
		listed = append(listed, typ.String())
	}
	slices.Sort(declared)
	slices.Sort(listed)
	for _, d := range declared {
		if !slices.Contains(listed, d) {
			t.Errorf("exported type %s is missing from exportedTypes", d)
		}
	}
	for _, l := range listed {
		if !slices.Contains(declared, l) {
			t.Errorf("exportedTypes lists %s, which is not declared", l)
		}
	}
}

// secretString names the string fields that hold a secret (an
// Authorization field holds a header value, credentials included),
// secretBytes the []byte ones and secretKey the interface fields that may
// hold a private key; notSecret the fields whose names match but hold
// none. A secret field gets a canary; every other field a harmless value.
var (
	secretString = regexp.MustCompile(`(?i)secret|token|passphrase|password|verifier|assertion|usercode|devicecode|cookie|^authorization$`)
	secretBytes  = regexp.MustCompile(`(?i)secret|token|keypair|key$`)
	secretKey    = regexp.MustCompile(`(?i)privatekey|signer|^key$`)
	notSecret    = regexp.MustCompile(`(?i)^(tokentype|tokenurl|accesstokenenv|tokenendpoint.*|preparetokentypes|tokentypes|token68|.*tokenexpiry|tokens|assertionaudience)$`)
)

// planter fills a value with canaries in its secret fields.
type planter struct {
	secrets map[string]string // canary (in one of its printed forms) -> where it was planted
}

func (p *planter) plant(where string, b []byte) {
	s := string(b)
	p.secrets[s] = where
	p.secrets[hex.EncodeToString(b)] = where + " (hex)"
	p.secrets[base64.StdEncoding.EncodeToString(b)] = where + " (base64)"
	if d := strings.Trim(fmt.Sprint(b), "[]"); len(b) > 4 {
		p.secrets[d] = where + " (decimal bytes)"
	}
}

// fill fills v (settable) with values: canaries in secret fields, something
// non-zero elsewhere, recursing into structs, pointers, slices and maps.
// Unexported fields are filled only in this module's types (the standard
// library's internals are left alone).
func (p *planter) fill(v reflect.Value, where, name string, depth int) {
	if depth > 6 {
		return
	}
	if notSecret.MatchString(name) {
		name = ""
	}
	switch v.Kind() {
	case reflect.String:
		if secretString.MatchString(name) {
			c := canary.New("f")
			p.plant(where, []byte(c))
			v.SetString(c)
		} else {
			v.SetString("plain-" + name)
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Type().String() == "time.Duration" || v.Type().PkgPath() == "" || strings.Contains(v.Type().PkgPath(), "tokenward") {
			v.SetInt(7)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if secretBytes.MatchString(name) {
				c := []byte(canary.New("b"))
				p.plant(where, c)
				v.SetBytes(c)
			}
			return
		}
		s := reflect.MakeSlice(v.Type(), 1, 1)
		p.fill(s.Index(0), where+"[0]", name, depth+1)
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		m := reflect.MakeMap(v.Type())
		val := reflect.New(v.Type().Elem()).Elem()
		p.fill(val, where+"[k]", name, depth+1)
		m.SetMapIndex(reflect.ValueOf("k").Convert(v.Type().Key()), val)
		v.Set(m)
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		p.fill(e.Elem(), where, name, depth+1)
		v.Set(e)
	case reflect.Interface:
		if !secretKey.MatchString(name) {
			return
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if reflect.TypeOf(key).Implements(v.Type()) {
			p.secrets[key.D.String()] = where + " (private key D)"
			p.secrets[key.D.Text(16)] = where + " (private key D, hex)"
			v.Set(reflect.ValueOf(key))
		}
	case reflect.Struct:
		t := v.Type()
		if t.PkgPath() == "sync" || t.PkgPath() == "sync/atomic" || t.PkgPath() == "time" || t.PkgPath() == "math/big" {
			return
		}
		ours := strings.HasPrefix(t.PkgPath(), "github.com/tokenward/tokenward")
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !ours {
				continue
			}
			fv := v.Field(i)
			if !f.IsExported() {
				fv = reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem()
			}
			p.fill(fv, where+"."+f.Name, f.Name, depth+1)
		}
	}
}

// hasLock reports whether t holds a lock: such a value is never copied,
// so only a pointer to it is printed.
func hasLock(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		ft := t.Field(i).Type
		if ft.PkgPath() == "sync" || ft.PkgPath() == "sync/atomic" || hasLock(ft) {
			return true
		}
	}
	return false
}

// verbs are the formatting verbs tried on every value.
var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%o", "%e", "%g", "%b", "%c", "%U", "%10.4v", "%-+#v"}

// TestExportedTypesRedact plants canaries in every secret field of a value
// of every exported type (exportedTypes), unexported fields included, and
// fails if any formatting verb or slog handler (text and JSON) prints one.
func TestExportedTypesRedact(t *testing.T) {
	t.Parallel()
	for _, typ := range exportedTypes {
		if typ.Kind() == reflect.Interface || typ.Kind() == reflect.Func {
			continue // no value of its own to print
		}
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			p := &planter{secrets: map[string]string{}}
			ptr := reflect.New(typ)
			p.fill(ptr.Elem(), typ.String(), typ.Name(), 0)
			if len(p.secrets) == 0 {
				t.Skipf("%s holds no secret field", typ)
			}
			values := map[string]any{"*" + typ.Name(): ptr.Interface()}
			if !hasLock(typ) {
				values[typ.Name()] = ptr.Elem().Interface()
			}
			for what, v := range values {
				outs := map[string]string{}
				for _, verb := range verbs {
					outs[verb] = fmt.Sprintf(verb, v)
				}
				for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
					"slog text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
					"slog JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
				} {
					var b bytes.Buffer
					slog.New(h(&b)).Info("value", "v", v)
					outs[name] = b.String()
				}
				for how, out := range outs {
					for secret, where := range p.secrets {
						if strings.Contains(out, secret) {
							t.Errorf("%s of %s prints the secret of %s:\n%s", how, what, where, out)
						}
					}
				}
			}
		})
	}
}

// The planter itself finds what it plants: a struct without redaction
// leaks its secret through %v, a private key through slog's JSON, and
// key bytes inside a TLS configuration through %s (a verb that does not
// fit a pointer makes fmt print the pointed-to struct in full).
func TestPlanterFindsLeaks(t *testing.T) {
	t.Parallel()
	type leaky struct {
		ClientSecret string
		PrivateKey   crypto.Signer
	}
	type leakyTLS struct{ TLS *tls.Config }
	found := map[string]bool{}
	check := func(typ reflect.Type, out func(v any) string) {
		p := &planter{secrets: map[string]string{}}
		v := reflect.New(typ)
		p.fill(v.Elem(), typ.Name(), typ.Name(), 0)
		o := out(v.Interface())
		for secret, where := range p.secrets {
			if strings.Contains(o, secret) {
				found[strings.Fields(where)[0]] = true
			}
		}
	}
	check(reflect.TypeFor[leaky](), func(v any) string { return fmt.Sprintf("%v", v) })
	check(reflect.TypeFor[leaky](), func(v any) string {
		var b bytes.Buffer
		slog.New(slog.NewJSONHandler(&b, nil)).Info("v", "v", v)
		return b.String()
	})
	check(reflect.TypeFor[leakyTLS](), func(v any) string { return fmt.Sprintf("%s", reflect.ValueOf(v).Elem().Interface()) })
	for _, want := range []string{"leaky.ClientSecret", "leaky.PrivateKey", "leakyTLS.TLS.EncryptedClientHelloKeys[0].PrivateKey"} {
		if !found[want] {
			t.Errorf("planted secret %s not found in the output: the check would miss leaks (found %v)", want, found)
		}
	}
}
