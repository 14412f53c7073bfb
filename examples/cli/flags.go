package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// settings are the values of the global flags, which may come before the
// command or after it ("cli --profile work status", "cli status --profile
// work"), each with an environment variable as its default.
type settings struct {
	issuer, clientID, scopes, resource, apiOrigins string
	profile, store, caFile                         string
	loginTimeout                                   time.Duration
	insecure, verbose                              bool
}

// envVar is an environment variable the program reads, for --help.
type envVar struct{ name, about string }

// envVars lists every environment variable the program reads, in the
// order --help shows them.
var envVars = []envVar{
	{"TOKENWARD_ISSUER", "issuer URL (--issuer)"},
	{"TOKENWARD_CLIENT_ID", "registered client ID (--client-id)"},
	{"TOKENWARD_CLIENT_SECRET", "client secret of a confidential client (no flag: flags show up in the process list)"},
	{"TOKENWARD_SCOPES", "space-separated scopes (--scopes)"},
	{"TOKENWARD_RESOURCE", "RFC 8707 resource, the API's identifier (--resource)"},
	{"TOKENWARD_API_ORIGIN", "extra origins that may receive the token, comma-separated (--api-origin)"},
	{"TOKENWARD_PROFILE", "account name, for several accounts (--profile)"},
	{"TOKENWARD_STORE", "keychain (default), encrypted-file, memory or plaintext-file (--store)"},
	{"TOKENWARD_PASSPHRASE", "passphrase of the encrypted-file store (no flag)"},
	{"TOKENWARD_ACCESS_TOKEN", "a fixed access token to use instead of a login (CI); nothing is stored"},
	{"TOKENWARD_LOGIN_TIMEOUT", "how long a browser login waits, such as 2m (--login-timeout; default 5m)"},
	{"TOKENWARD_CA_FILE", "PEM file of CA certificates to trust besides the system's (--ca-file)"},
	{"TOKENWARD_VERBOSE", "1 or true: log what happens to stderr (--verbose)"},
}

// envDefaults returns the settings the environment gives, before flags.
func envDefaults() (settings, error) {
	s := settings{
		issuer:     os.Getenv("TOKENWARD_ISSUER"),
		clientID:   os.Getenv("TOKENWARD_CLIENT_ID"),
		scopes:     os.Getenv("TOKENWARD_SCOPES"),
		resource:   os.Getenv("TOKENWARD_RESOURCE"),
		apiOrigins: os.Getenv("TOKENWARD_API_ORIGIN"),
		profile:    os.Getenv("TOKENWARD_PROFILE"),
		caFile:     os.Getenv("TOKENWARD_CA_FILE"),
	}
	// The store's mode is left to the store package when the flag is not
	// given: it reads TOKENWARD_STORE itself, and names the valid modes
	// when the variable holds another.
	if v := os.Getenv("TOKENWARD_LOGIN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("TOKENWARD_LOGIN_TIMEOUT=%q is not a positive duration (such as 90s or 5m)", printable(v))
		}
		s.loginTimeout = d
	}
	switch v := strings.ToLower(os.Getenv("TOKENWARD_VERBOSE")); v {
	case "", "0", "false", "no":
	default:
		s.verbose = true
	}
	return s, nil
}

// register binds the global flags to s on fs, with s's current values as
// their defaults: registered on the command's flag set too, they can
// follow the command.
func (s *settings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.issuer, "issuer", s.issuer, "issuer URL (discovery)")
	fs.StringVar(&s.clientID, "client-id", s.clientID, "registered client ID")
	fs.StringVar(&s.scopes, "scopes", s.scopes, "space-separated scopes")
	fs.StringVar(&s.resource, "resource", s.resource, "RFC 8707 resource: the API's identifier, usually its base URL")
	fs.StringVar(&s.apiOrigins, "api-origin", s.apiOrigins, "extra origins (comma-separated) that may receive the token, added to the resource's")
	fs.StringVar(&s.profile, "profile", s.profile, "account name, for several accounts")
	fs.StringVar(&s.store, "store", s.store, "where tokens are kept: keychain, encrypted-file, memory, plaintext-file")
	fs.StringVar(&s.caFile, "ca-file", s.caFile, "PEM file of CA certificates to trust besides the system's")
	fs.DurationVar(&s.loginTimeout, "login-timeout", s.loginTimeout, "how long a browser login waits (default 5m)")
	fs.BoolVar(&s.insecure, "allow-insecure-loopback", s.insecure, "accept http:// URLs on 127.0.0.1 (local testing)")
	fs.BoolVar(&s.verbose, "verbose", s.verbose, "log what happens to stderr (never a secret)")
	fs.BoolVar(&s.verbose, "v", s.verbose, "short for --verbose")
}

// origins returns the origins the token may be sent to: the resource's,
// then those of --api-origin. The flag adds to the resource's origin
// rather than replacing it, so that naming one more API never takes the
// token away from the resource it was issued for.
func (s *settings) origins() []string {
	var out []string
	add := func(o string) {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/")
		if o == "" {
			return
		}
		for _, have := range out {
			if strings.EqualFold(have, o) {
				return
			}
		}
		out = append(out, o)
	}
	if o := originOf(s.resource); o != "" {
		add(o)
	}
	for _, o := range strings.Split(s.apiOrigins, ",") {
		add(o)
	}
	return out
}

// originOf returns the scheme://host[:port] of u, or "" when u is not an
// absolute URL.
func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// typedFlag is a flag as the user typed it, kept to repeat it in the
// command lines hints suggest.
type typedFlag struct{ name, value string }

// typedFlags returns the flags set on fs, in name order, with -v shown as
// --verbose. Bool flags have the value "true" or "false".
func typedFlags(fs *flag.FlagSet) []typedFlag {
	var out []typedFlag
	fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if name == "v" {
			name = "verbose"
		}
		out = append(out, typedFlag{name, f.Value.String()})
	})
	return out
}

// mergeTyped returns the flags of both lists, the later value of a flag
// typed twice winning, in name order.
func mergeTyped(a, b []typedFlag) []typedFlag {
	m := map[string]string{}
	for _, f := range append(append([]typedFlag(nil), a...), b...) {
		m[f.name] = f.value
	}
	out := make([]typedFlag, 0, len(m))
	for n, v := range m {
		out = append(out, typedFlag{n, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// param is one --param key=value of login.
type param struct{ key, value string }

// paramList is the value of login's repeatable --param flag.
type paramList []param

// String shows the parameters, for flag's usage text.
func (p *paramList) String() string {
	var parts []string
	for _, x := range *p {
		parts = append(parts, x.key+"="+x.value)
	}
	return strings.Join(parts, ",")
}

// Set adds one key=value.
func (p *paramList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, such as login_hint=ada@example.com")
	}
	*p = append(*p, param{k, v})
	return nil
}
