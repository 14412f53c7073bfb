package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/term"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// devicePrompt shows the code through Options.DevicePrompt, or as text with a
// QR code and a countdown on Options.Prompt. ctx carries the hosts a sign-in
// page is expected on, for TextDevicePrompt's warning.
func (c *Client) devicePrompt(ctx context.Context, d DeviceCode) {
	ctx = context.WithValue(ctx, signInHostsKey{}, c.signInHosts())
	if c.cfg.DevicePrompt != nil {
		c.cfg.DevicePrompt(ctx, d)
		return
	}
	TextDevicePrompt(c.prompt)(ctx, d)
}

// TextDevicePrompt returns a DevicePrompt that writes the verification URL,
// the user code and (when the server sent verification_uri_complete) a QR
// code of it to w. When w is a terminal it also keeps a countdown line up to
// date until the login ends.
//
// What the server sent is printed with every character a terminal could act
// on (escape sequences, carriage returns, bidi overrides, invalid UTF-8)
// shown escaped, as \x1b or \u202e; the QR code is drawn only for an
// address with no such character. A warning line comes first when an
// address is not https (loopback http aside) or, during Login, not on the
// issuer's site (registrable domain, such as example.com) or the device
// authorization endpoint's.
func TextDevicePrompt(w io.Writer) func(ctx context.Context, d DeviceCode) {
	return func(ctx context.Context, d DeviceCode) {
		showDeviceCode(ctx, w, d, isTerminal(w))
	}
}

// isTerminal reports whether w is a terminal, where a line can be redrawn
// in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showDeviceCode is TextDevicePrompt with the terminal check made: on a
// terminal (tty) it redraws a countdown every second until ctx ends;
// otherwise it writes the time left once and returns.
func showDeviceCode(ctx context.Context, w io.Writer, d DeviceCode, tty bool) {
	hosts, _ := ctx.Value(signInHostsKey{}).([]string)
	for _, warning := range signInWarnings(d, hosts) {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	fmt.Fprintf(w, "To sign in, open %s and enter the code %s\n", redact.Terminal(d.VerificationURI), redact.Terminal(d.UserCode))
	switch complete := d.VerificationURIComplete; {
	case complete == "":
	case qrSafe(complete):
		fmt.Fprintf(w, "or scan this code to open %s:\n", complete)
		qrterminal.GenerateWithConfig(complete, qrterminal.Config{
			Level: qrterminal.L, Writer: w, HalfBlocks: true,
			BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
			WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE,
			QuietZone: 1,
		})
	default:
		// A phone opens what a QR code holds, with no escaping and no
		// warning to read: none for an address that needs either.
		fmt.Fprintf(w, "or open %s (no QR code for this address)\n", redact.Terminal(complete))
	}
	if !tty {
		fmt.Fprintf(w, "The code expires in %s.\n", time.Until(d.Expiry).Round(time.Second))
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		left := time.Until(d.Expiry)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(w, "\rWaiting for approval; the code expires in %s ", fmtCountdown(left))
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
	}
}

func fmtCountdown(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// signInHostsKey is the context key under which devicePrompt passes the
// hosts a sign-in page is expected on ([]string) to TextDevicePrompt.
type signInHostsKey struct{}

// signInHosts returns the hosts of the issuer and of the device
// authorization endpoint, the issuer's first.
func (c *Client) signInHosts() []string {
	var hosts []string
	for _, raw := range []string{c.issuer, c.endpoints.DeviceAuthURL} {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		if h := normHost(u.Hostname()); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// signInWarnings returns what the user should be told before trusting the
// addresses in d: hosts lists where a sign-in page is expected (none:
// no host check).
func signInWarnings(d DeviceCode, hosts []string) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	const trust = "; make sure you trust it before entering the code"
	for _, raw := range []string{d.VerificationURI, d.VerificationURIComplete} {
		if raw == "" {
			continue
		}
		if redact.Terminal(raw) != raw {
			// Whatever else is wrong with it, this says the most.
			add("this sign-in address holds control or invisible characters (shown escaped)" + trust)
			continue
		}
		u := webURL(raw)
		if u == nil {
			add("this sign-in address is not a plain web address" + trust)
			continue
		}
		if u.Scheme != "https" && !oauthwire.IsLoopbackHost(u.Hostname()) {
			add("this sign-in address does not use https: anyone on the network can read what you enter there")
		}
		if len(hosts) > 0 && !onHosts(u.Hostname(), hosts) {
			add("this sign-in address is not on " + redact.Terminal(hosts[0]) + trust)
		}
	}
	if redact.Terminal(d.UserCode) != d.UserCode {
		add("the code holds control or invisible characters (shown escaped)" + trust)
	}
	return out
}

// qrSafe reports whether raw may be put in a QR code: an https URL (or
// http on a loopback host) with a host, no user info, and no character
// that Terminal would escape.
func qrSafe(raw string) bool {
	u := webURL(raw)
	return u != nil && (u.Scheme == "https" || oauthwire.IsLoopbackHost(u.Hostname())) && redact.Terminal(raw) == raw
}

// webURL parses raw as an absolute http(s) URL with a host and no user
// info ("https://as.example@evil.example/" names evil.example), or returns
// nil.
func webURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.User != nil {
		return nil
	}
	return u
}

// onHosts reports whether host is on the same site as one of hosts: the
// same registrable domain (one label below a public suffix, from the
// public suffix list: example.com for login.example.com and
// www.example.com, but alice.github.io and bob.github.io are two sites).
// Whoever runs a registrable domain runs all of its hosts, so such an
// address brings in nobody the issuer does not already depend on; an
// address on another site gets the warning. IP addresses and single-label
// names (localhost) match only themselves.
func onHosts(host string, hosts []string) bool {
	host = normHost(host)
	if host == "" {
		return false
	}
	site := registrable(host)
	for _, h := range hosts {
		if host == h || (site != "" && site == registrable(h)) {
			return true
		}
	}
	return false
}

// registrable returns host's registrable domain (eTLD+1), or "" for an IP
// address, a public suffix itself, or a name the list cannot place.
func registrable(host string) string {
	if net.ParseIP(host) != nil || !strings.Contains(host, ".") {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return ""
	}
	return d
}

// normHost lowers a host name's case and drops a final dot.
func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
