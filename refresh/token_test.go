package refresh

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// listMembers wraps up so that its tokens list their extra members under
// tokenx.KeyExtraNames, as tokenward's token parser is to do: names are the
// response's members besides access_token, token_type and expires_in.
func listMembers(up Upstream, names ...string) Upstream {
	return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		tok, err := up.Token(ctx, cur)
		if err != nil {
			return nil, err
		}
		m := map[string]any{tokenx.KeyExtraNames: names}
		for _, n := range names {
			m[n] = tok.Extra(n)
		}
		return tok.WithExtra(m), nil
	})
}

// The public token carries no refresh token, not even among the extra
// members of the response (x/oauth2 keeps the whole response as extras),
// nor a device_secret; the other members are kept: those the cache knows
// by name always, a provider's own (Salesforce's instance_url) when the
// token lists its members. The full token, for the store, keeps them all.
func TestPublicTokenExtrasHaveNoRefreshToken(t *testing.T) {
	t.Parallel()
	const rt = "RT-SECRET-ROTATED-0123456789"
	const ds = "DEVICE-SECRET-0123456789"
	jsonBody := `{"access_token":"AT-NEW","token_type":"Bearer","expires_in":3600,"refresh_token":"` + rt + `","id_token":"IDT","device_secret":"` + ds + `","instance_url":"https://x.example"}`
	formBody := "access_token=AT-NEW&token_type=bearer&expires_in=3600&refresh_token=" + rt + "&id_token=IDT&device_secret=" + ds + "&instance_url=https%3A%2F%2Fx.example"
	for _, tc := range []struct {
		name, ctype, body string
		listed            bool
	}{
		{"json", "application/json", jsonBody, true},
		{"form", "application/x-www-form-urlencoded", formBody, true},
		{"json without the member list", "application/json", jsonBody, false},
		{"form without the member list", "application/x-www-form-urlencoded", formBody, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			cfg := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
			ts := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "RT-OLD", Expiry: time.Now().Add(-time.Hour)})
			up := FromTokenSource(ts)
			if tc.listed {
				// A careless list names the secrets too: they stay out all the same.
				up = listMembers(up, "refresh_token", "id_token", "device_secret", "instance_url")
			}
			st := newMemStore()
			c := mustNew(t, up, func(o *Options) { o.Persister = st })
			defer c.Close()
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "AT-NEW" || tok.RefreshToken != "" {
				t.Fatalf("token %q / %q", tok.AccessToken, tok.RefreshToken)
			}
			// (Extra of a form response answers "" for an absent key.)
			if v := tok.Extra("refresh_token"); v != nil && v != "" {
				t.Fatalf("Extra(refresh_token) = %v, want nothing", v)
			}
			if v := tok.Extra("device_secret"); v != nil && v != "" {
				t.Fatalf("Extra(device_secret) = %v, want nothing", v)
			}
			if v := tok.Extra("id_token"); v != "IDT" {
				t.Fatalf("Extra(id_token) = %v, want IDT (kept)", v)
			}
			if tc.listed {
				if v := tok.Extra("instance_url"); v != "https://x.example" {
					t.Fatalf("Extra(instance_url) = %v, want it kept", v)
				}
				if names, _ := tok.Extra(tokenx.KeyExtraNames).([]string); !slices.Equal(names, []string{"id_token", "instance_url"}) {
					t.Fatalf("the public token lists %v, want [id_token instance_url]", names)
				}
			} else if v := tok.Extra("instance_url"); v != nil {
				// x/oauth2 offers no way to list a token's members.
				t.Fatalf("Extra(instance_url) = %v of a token that lists no members, want nothing", v)
			}
			for _, format := range []string{"%v", "%+v", "%#v"} {
				if s := fmt.Sprintf(format, tok); strings.Contains(s, rt) || strings.Contains(s, ds) {
					t.Fatalf("%s of the public token shows a secret: %s", format, s)
				}
			}
			// The cache itself still has them: the store gets the refresh
			// token and the device secret.
			if got := st.get(c.Key()); got == nil || got.RefreshToken != rt || got.Extra("device_secret") != ds {
				t.Fatalf("stored %+v, want the refresh token and device_secret saved", got)
			}
		})
	}
}

// The conversions at the public edges: inward, a token's extra members are
// read by name (the known ones and the listed ones) and the refresh
// token's expiry is normalised; outward, the full form keeps everything,
// the public form drops the secrets, and each lists its members.
func TestTokenConversion(t *testing.T) {
	t.Parallel()
	rtExp := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	in := (&oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: exp, ExpiresIn: 3600}).WithExtra(map[string]any{
		"id_token": "idt", "scope": "a b", "issued_token_type": "urn:x", "device_secret": "ds", "instance_url": "https://x.example",
		"refresh_token": "rt-in-extras", "access_token": "at-in-extras", "empty": "",
		tokenx.KeyRefreshTokenExpiry: rtExp.Format(time.RFC3339Nano),
		tokenx.KeyExtraNames:         []any{"instance_url", "refresh_token", "access_token", "empty"},
	})
	tok := fromOAuth2(in)
	if tok.access != "at" || tok.typ != "Bearer" || tok.refresh != "rt" || !tok.expiry.Equal(exp) || tok.expiresIn != 3600 {
		t.Fatalf("fields %+v", tok)
	}
	want := []string{"device_secret", "id_token", "instance_url", "issued_token_type", "scope", tokenx.KeyRefreshTokenExpiry}
	var got []string
	for k := range tok.extra {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("extra members %v, want %v (no tokens, no empty members, no list)", got, want)
	}
	if !tok.rtExpiry().Equal(rtExp) {
		t.Fatalf("refresh token expiry %v, want %v as a time", tok.rtExpiry(), rtExp)
	}
	if secrets := secretsOf(tok); !slices.Equal(secrets, []string{"at", "rt", "idt", "ds"}) {
		t.Fatalf("secrets %q", secrets)
	}

	full := tok.oauth2()
	if full.RefreshToken != "rt" || full.Extra("device_secret") != "ds" || full.Extra("instance_url") != "https://x.example" ||
		!tokenx.RefreshTokenExpiry(full).Equal(rtExp) || full.ExpiresIn != 3600 {
		t.Fatalf("full token %+v", full)
	}
	if names, _ := full.Extra(tokenx.KeyExtraNames).([]string); !slices.Equal(names, want) {
		t.Fatalf("the full token lists %v, want %v", names, want)
	}
	if again := fromOAuth2(full); !sameToken(again, tok) || len(again.extra) != len(tok.extra) {
		t.Fatalf("a round trip changed the token: %+v", again)
	}
	if full == tok.oauth2() {
		t.Fatal("oauth2 returned the same value twice: a callee could change the cache's")
	}

	pub := tok.public()
	if pub.RefreshToken != "" || pub.Extra("device_secret") != nil || pub.Extra("refresh_token") != nil || pub.Extra("instance_url") != "https://x.example" {
		t.Fatalf("public token %+v", pub)
	}
	if names, _ := pub.Extra(tokenx.KeyExtraNames).([]string); slices.Contains(names, "device_secret") || !slices.Contains(names, "instance_url") {
		t.Fatalf("the public token lists %v", names)
	}

	// A token without extras stays without; nil stays nil.
	if bare := fromOAuth2(&oauth2.Token{AccessToken: "a"}); bare.extra != nil || bare.public().Extra(tokenx.KeyExtraNames) != nil {
		t.Fatalf("bare token: %+v", bare)
	}
	if fromOAuth2(nil) != nil {
		t.Fatal("fromOAuth2(nil) != nil")
	}
}
