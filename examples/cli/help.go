package main

import (
	"flag"
	"fmt"
	"io"
)

// usageLine is the one-line summary of the commands.
const usageLine = "usage: cli [flags] login [--device] [--force] [--param key=value]... | status | call URL|PATH | logout | help"

// printUsage prints the short usage, after a usage error.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, usageLine)
	fmt.Fprintln(w, "Run 'cli --help' for the flags and environment variables.")
}

// printHelp prints the full help: commands, flags, environment variables.
func printHelp(w io.Writer) {
	fmt.Fprint(w, `cli signs in to an OAuth 2.0 / OpenID Connect issuer and calls its API.

`+usageLine+`

Commands:
  login     sign in in the browser (PKCE), or with --device on another device;
            does nothing when already signed in, unless --force
              --device             use the device flow (no browser on this machine)
              --force              sign in again even when already signed in
              --param key=value    extra authorization parameter (login_hint, prompt,
                                   audience, ...); repeatable, the last value of a key wins
  status    who is signed in, token expiry, where tokens are kept
  call      GET a URL with the access token, printing the answer; a path (/things)
            is resolved against --resource (or the one API origin)
  logout    revoke the tokens at the server and delete them here
  help      this text

Flags (before or after the command):
`)
	var s settings
	fs := flag.NewFlagSet("cli", flag.ContinueOnError)
	s.register(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, `
--api-origin adds origins to the resource's: the token goes to the resource's
origin and to these, never elsewhere.

Environment variables (a flag wins over its variable):
`)
	for _, e := range envVars {
		fmt.Fprintf(w, "  %-25s %s\n", e.name, e.about)
	}
	fmt.Fprint(w, `
Exit status: 0 success, 1 failure, 2 usage error, 130 cancelled.
`)
}
