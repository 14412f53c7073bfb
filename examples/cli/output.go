package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokenward/tokenward/client"
)

// printLogout says what Logout did, and claims nothing it did not do.
func printLogout(w io.Writer, res *client.LogoutResult) {
	if !res.Found {
		fmt.Fprintln(w, "not signed in: nothing to revoke or delete")
		return
	}
	printRevoked(w, res)
	fmt.Fprintln(w, "signed out (tokens deleted locally)")
}

// printRevoked says which tokens the server revoked, and which it declined
// to revoke by policy (they stay valid until they expire: not a failure).
func printRevoked(w io.Writer, res *client.LogoutResult) {
	if len(res.Revoked) > 0 {
		fmt.Fprintf(w, "revoked at the server: %s\n", strings.Join(res.Revoked, ", "))
	}
	if len(res.NotRevocable) > 0 {
		fmt.Fprintf(w, "not revocable: the server does not revoke access tokens (its policy); they stay valid until they expire: %s\n", strings.Join(res.NotRevocable, ", "))
	}
}

// printStatus prints st; login is the command that signs in, origins where
// the token goes. Its text fields (the subject and the scopes come from
// the server) are escaped by the client, so they are printed as they are.
func printStatus(w io.Writer, st *client.Status, login cmdline, origins []string) {
	if st.FixedToken {
		// Nothing is stored and nobody signed in: the token is whatever
		// the variable holds.
		fmt.Fprintln(w, "using a fixed access token from TOKENWARD_ACCESS_TOKEN (no login stored)")
		if len(origins) > 0 {
			fmt.Fprintf(w, "sent to:       %s\n", strings.Join(origins, ", "))
		}
		return
	}
	if !st.LoggedIn {
		fmt.Fprintf(w, "not signed in (profile %s); to sign in, run:\n  %s\n", st.Profile, login)
	} else {
		who := st.Subject
		if who == "" {
			who = "(subject unknown)"
		}
		fmt.Fprintf(w, "signed in as %s (profile %s)\n", who, st.Profile)
		if len(st.Scopes) > 0 {
			fmt.Fprintf(w, "scopes:        %s\n", strings.Join(st.Scopes, " "))
		}
		if !st.AccessTokenExpiry.IsZero() {
			fmt.Fprintf(w, "access token:  expires in %s\n", until(st.AccessTokenExpiry))
		}
		switch {
		case !st.HasRefreshToken:
			fmt.Fprintln(w, "refresh token: none")
		case st.RefreshTokenExpiry.IsZero():
			fmt.Fprintln(w, "refresh token: stored")
		default:
			fmt.Fprintf(w, "refresh token: stored, expires in %s\n", until(st.RefreshTokenExpiry))
		}
	}
	s := st.Storage
	fmt.Fprintf(w, "storage:       %s (encrypted: %v)\n", strings.TrimSpace(s.Backend+" "+s.Location), s.Encrypted)
	if !s.Persistent {
		fmt.Fprintln(w, "WARNING:       nothing is kept after this command: a login lasts only for the process that made it")
	}
	if s.Warning != "" {
		fmt.Fprintf(w, "WARNING:       %s\n", s.Warning)
	}
}

func until(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d < 0 {
		return "0s (expired; it is refreshed on next use)"
	}
	return d.String()
}

// printable returns s with every character that is not graphic (control
// characters such as ESC and carriage return, bidi overrides, line
// separators) shown as a Go escape (\x1b, \r, \u202e), and every byte
// that is not UTF-8 as \xff, so that text from a server cannot act on the
// terminal. It is for the little text that does not come through the
// client, which escapes what it returns.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRuneToGraphic(r) // '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// escaped is an error that did not come from the client (net/http's, when
// calling the API), printed through printable: it may quote what the API
// sent, such as a redirect's target.
type escaped struct{ err error }

// Error is the message, escaped.
func (e escaped) Error() string { return printable(e.err.Error()) }

// Unwrap returns the error, for errors.Is (context.Canceled: exit 130).
func (e escaped) Unwrap() error { return e.err }
