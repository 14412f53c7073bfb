package client

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// WithAuthParam adds the parameter key=value to this login's authorization
// request (the browser's, or with WithDevice the device authorization
// request), replacing any value Options.AuthParams or
// Options.DeviceAuthParams gives it:
//
//	c.Login(ctx, client.WithAuthParam("prompt", "login"), client.WithAuthParam("login_hint", "ada@example.com"))
//
// The parameters tokenward sets itself are refused, as for
// [LoginOptions.AuthParams].
func WithAuthParam(key, value string) func(*LoginOptions) {
	return func(o *LoginOptions) {
		if o.AuthParams == nil {
			o.AuthParams = url.Values{}
		}
		o.AuthParams.Set(key, value)
	}
}

// ownedParams are the parameters tokenward sets itself, with the reason an
// application may not set them through AuthParams, DeviceAuthParams,
// TokenParams or LoginOptions.AuthParams. Each protects the login or
// identifies the client: an extra parameter that replaced one could turn
// off PKCE, send the code elsewhere, or present another client's
// credentials. Names are compared without regard to case, because some
// servers read them so.
var ownedParams = map[string]string{
	"state":                 "tokenward sets it for every login: it ties the browser's answer to this login",
	"code_challenge":        "tokenward sets it for every login (PKCE)",
	"code_challenge_method": "tokenward sets it for every login (PKCE)",
	"code_verifier":         "tokenward sets it for every login (PKCE)",
	"nonce":                 "tokenward owns it",
	"redirect_uri":          "tokenward sets it to its loopback listener",
	"response_type":         "tokenward's login reads an authorization code from the redirect",
	"response_mode":         "tokenward's login reads the answer from the redirect's query",
	"request_uri":           "it would replace the parameters tokenward sets (for pushed requests set Options.UsePAR)",
	"request":               "a request object would replace the parameters tokenward sets",
	"client_id":             "it comes from Options.ClientID",
	"client_secret":         "client authentication comes from Options.ClientSecret or PrivateKey",
	"client_assertion":      "client authentication comes from Options.ClientSecret or PrivateKey",
	"client_assertion_type": "client authentication comes from Options.ClientSecret or PrivateKey",
	"grant_type":            "tokenward sets it for each token request",
	"code":                  "tokenward sets it for each token request",
	"refresh_token":         "tokenward sets it for each token request",
	"device_code":           "tokenward sets it for each token request",
	"scope":                 "set Options.Scopes instead",
	"resource":              "set Options.Resources instead",
	"dpop_jkt":              "tokenward sets it from the login's DPoP key (Options.DPoP)",
}

// checkParams refuses extra parameters (named field in messages) that
// tokenward owns, and names or values that hold control characters or
// anything else a terminal or a log could act on. Messages name the
// parameter, never its value, which may be a credential (an id_token_hint).
func checkParams(op, field string, v url.Values) error {
	for _, k := range paramNames(v) {
		name := redact.Truncate(k, 64)
		if why, ok := ownedParams[strings.ToLower(k)]; ok {
			return failure(op, fmt.Sprintf("%s: parameter %q cannot be set there: %s", field, name, why), ErrInvalidConfig)
		}
		if !paramName(k) {
			return failure(op, fmt.Sprintf("%s: parameter name %q must be letters, digits, '_', '-' or '.' (ASCII)", field, name), ErrInvalidConfig)
		}
		// Servers that fold case beyond ASCII, or read '.' and '-' as '_'
		// (as PHP does), must not see one of tokenward's own parameters.
		if why, ok := ownedParams[strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToLower(k))]; ok {
			return failure(op, fmt.Sprintf("%s: parameter %q cannot be set there: %s", field, name, why), ErrInvalidConfig)
		}
		for _, val := range v[k] {
			if !safeParamText(val) {
				return failure(op, fmt.Sprintf("%s: the value of parameter %q holds control characters", field, name), ErrInvalidConfig)
			}
		}
	}
	return nil
}

// paramName reports whether s is a parameter name tokenward passes on:
// ASCII letters, digits, '_', '-' and '.', which every extension parameter
// in use fits. Anything else could be read by a server as one of the
// parameters tokenward owns ("ſtate" folds to "state" in Unicode) or not
// at all.
func paramName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// safeParamText reports whether s is valid UTF-8 without control
// characters, escape sequences or invisible formatting characters (bidi
// overrides): what goes into a URL printed on the terminal must read as it
// is.
func safeParamText(s string) bool {
	if !utf8.ValidString(s) || redact.Terminal(s) != s {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkOptionParams checks the extra parameters and the PAR settings of
// Options, at New.
func checkOptionParams(cfg *Options) error {
	for _, p := range []struct {
		field string
		v     url.Values
	}{{"AuthParams", cfg.AuthParams}, {"DeviceAuthParams", cfg.DeviceAuthParams}, {"TokenParams", cfg.TokenParams}} {
		if err := checkParams(opConfig, p.field, p.v); err != nil {
			return err
		}
	}
	if cfg.Endpoints.PARURL != "" {
		if err := oauthwire.CheckSecureURL(cfg.Endpoints.PARURL, cfg.AllowInsecureLoopback); err != nil {
			return inOp(opConfig, err)
		}
	}
	if cfg.UsePAR && cfg.Issuer == "" && cfg.Endpoints.PARURL == "" {
		return failure(opConfig, "UsePAR needs a pushed authorization request endpoint: set Endpoints.PARURL, or Issuer for discovery", ErrInvalidConfig)
	}
	return nil
}

// cloneParamOptions gives cfg its own copies of the parameter maps, so
// that an application changing its url.Values after New changes nothing.
func cloneParamOptions(cfg *Options) {
	cfg.AuthParams = cloneParams(cfg.AuthParams)
	cfg.DeviceAuthParams = cloneParams(cfg.DeviceAuthParams)
	cfg.TokenParams = cloneParams(cfg.TokenParams)
}

func cloneParams(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	return cloneValues(v)
}

// mergeParams returns base with over applied: each key of over replaces
// base's values of that key, and a key of over without values removes it.
func mergeParams(base, over url.Values) url.Values {
	out := cloneValues(base)
	for k, vs := range over {
		if len(vs) == 0 {
			delete(out, k)
			continue
		}
		out[k] = slices.Clone(vs)
	}
	return out
}

// withParams returns form with the extra parameters added: a copy when
// there are any. The extras never replace what form holds (the parameters
// tokenward sets are refused before, so none collide).
func withParams(form, extra url.Values) url.Values {
	if len(extra) == 0 {
		return form
	}
	out := cloneValues(form)
	for k, vs := range extra {
		if _, set := out[k]; !set && len(vs) > 0 {
			out[k] = slices.Clone(vs)
		}
	}
	return out
}

// check validates the per-login options, before Login starts anything.
func (o *LoginOptions) check() error {
	return checkParams(opLogin, "LoginOptions.AuthParams", o.AuthParams)
}

// paramNames lists v's parameter names, for printing Options: the values
// may be credentials (an id_token_hint) or personal data (a login_hint).
func paramNames(v url.Values) []string {
	if len(v) == 0 {
		return nil
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range v {
			if !yield(k) {
				return
			}
		}
	})
}
