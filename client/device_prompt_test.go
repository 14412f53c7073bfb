package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	promptURI      = "https://as.example/device"
	promptComplete = "https://as.example/device?user_code=BCDF-GHJK"
	promptUserCode = "BCDF-GHJK"
)

// The text prompt on a pipe or buffer: the URL and user code, a QR code of
// verification_uri_complete that decodes back to it, and the time left,
// written once.
func TestTextDevicePrompt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		d := DeviceCode{UserCode: promptUserCode, VerificationURI: promptURI, VerificationURIComplete: promptComplete, Expiry: time.Now().Add(10 * time.Minute)}
		// Not a terminal: it returns at once, without waiting for ctx to
		// end (the deadline only bounds a broken prompt).
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		TextDevicePrompt(&out)(ctx, d)
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the prompt took %v on a buffer, want it to return at once", waited)
		}

		ls := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if want := "To sign in, open " + promptURI + " and enter the code " + promptUserCode; ls[0] != want {
			t.Fatalf("line 1 = %q, want %q", ls[0], want)
		}
		if want := "or scan this code to open " + promptComplete + ":"; ls[1] != want {
			t.Fatalf("line 2 = %q, want %q", ls[1], want)
		}
		if want := "The code expires in 10m0s."; ls[len(ls)-1] != want {
			t.Fatalf("last line = %q, want %q", ls[len(ls)-1], want)
		}
		qr := ls[2 : len(ls)-1]
		// 46 bytes need QR version 3 at level L (29x29 modules, 55 data
		// bytes): one row of quiet zone, then two module rows per text row
		// (29 rows and the bottom quiet zone).
		if len(qr) != 1+15 {
			t.Fatalf("QR code has %d text rows, want 16 (version 3):\n%s", len(qr), strings.Join(qr, "\n"))
		}
		grid := qrGrid(t, qr)
		text, version, err := qrDecode(grid)
		if err != nil {
			t.Fatalf("QR code does not decode: %v\n%s", err, strings.Join(qr, "\n"))
		}
		if version != 3 || text != promptComplete {
			t.Fatalf("QR code is version %d holding %q, want version 3 holding %q", version, text, promptComplete)
		}
	})
}

// Without verification_uri_complete there is no QR code.
func TestTextDevicePromptWithoutCompleteURI(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		d := DeviceCode{UserCode: promptUserCode, VerificationURI: promptURI, Expiry: time.Now().Add(90 * time.Second)}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // bounds a broken prompt
		defer cancel()
		TextDevicePrompt(&out)(ctx, d)
		want := "To sign in, open " + promptURI + " and enter the code " + promptUserCode + "\nThe code expires in 1m30s.\n"
		if out.String() != want {
			t.Fatalf("prompt = %q, want %q", out.String(), want)
		}
	})
}

// What the server sent is printed with every character a terminal could
// act on escaped visibly: escape sequences (an OSC 8 hyperlink hiding the
// real address), carriage returns that overwrite the line, 8-bit C1
// controls raw or in UTF-8, bidi overrides, invalid UTF-8. An address that
// is not a plain web address gets no QR code, and warnings come first.
func TestTextDevicePromptEscapesServerText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		d        DeviceCode
		shows    []string // each must appear in the output
		warnings int
	}{
		{
			name: "hyperlink and overwrite",
			d: DeviceCode{
				UserCode:                "\x1b]8;;https://evil.example\x1b\\BCDF-GHJK\x1b]8;;\x1b\\",
				VerificationURI:         "https://evil.example/device\r\x1b[2Khttps://as.example/device",
				VerificationURIComplete: "https://as.example/device?user_code=\x07\b\x7f",
			},
			shows: []string{
				`open https://evil.example/device\x0d\x1b[2Khttps://as.example/device and enter`,
				`the code \x1b]8;;https://evil.example\x1b\BCDF-GHJK\x1b]8;;\x1b\` + "\n",
				`or open https://as.example/device?user_code=\x07\x08\x7f (no QR code`,
			},
			warnings: 2,
		},
		{
			name: "C1 controls and bidi",
			d: DeviceCode{
				UserCode:                "BCDF\u009b2J\x9b2J",
				VerificationURI:         "https://as.example/\u202eecived\u2066",
				VerificationURIComplete: "https://as.example/device?user_code=\u009d0;x\u009c\xff",
			},
			shows: []string{
				`open https://as.example/\u202eecived\u2066 and enter the code BCDF\u009b2J\x9b2J` + "\n",
				`or open https://as.example/device?user_code=\u009d0;x\u009c\xff (no QR code`,
			},
			warnings: 2,
		},
		{
			name: "not https, not a web address",
			d: DeviceCode{
				UserCode:                "BCDF-GHJK",
				VerificationURI:         "javascript:alert(1)",
				VerificationURIComplete: "http://as.example/device?user_code=BCDF-GHJK",
			},
			shows: []string{
				"WARNING: this sign-in address does not use https",
				"WARNING: this sign-in address is not a plain web address",
				"open javascript:alert(1) and enter the code BCDF-GHJK\n",
				"or open http://as.example/device?user_code=BCDF-GHJK (no QR code",
			},
			warnings: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var out syncBuffer
				tc.d.Expiry = time.Now().Add(time.Minute)
				TextDevicePrompt(&out)(t.Context(), tc.d)
				got := out.String()
				if !utf8.ValidString(got) {
					t.Fatalf("the prompt is not valid UTF-8: %q", got)
				}
				for _, r := range got {
					if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || unicode.Is(unicode.Cf, r) {
						t.Fatalf("the prompt holds %U:\n%q", r, got)
					}
				}
				for _, w := range tc.shows {
					if !strings.Contains(got, w) {
						t.Errorf("the prompt lacks %q:\n%s", w, got)
					}
				}
				if n := strings.Count(got, "WARNING: "); n != tc.warnings {
					t.Errorf("%d warnings, want %d:\n%s", n, tc.warnings, got)
				}
				if !strings.HasPrefix(got, "WARNING: ") {
					t.Errorf("the warnings do not come first:\n%s", got)
				}
				if strings.ContainsAny(got, "█▀▄") {
					t.Errorf("a QR code was drawn for an unsafe address:\n%s", got)
				}
			})
		})
	}
}

// A regular file is not a terminal: no countdown, which would fill a log
// file with carriage returns.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.CreateTemp(t.TempDir(), "prompt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b syncBuffer
	if isTerminal(f) || isTerminal(&b) {
		t.Fatal("a file or a buffer was taken for a terminal")
	}
}

// On a terminal the prompt redraws "expires in m:ss" every second on the
// bubble's clock, stops at 0:00 and clears the line when the login ends.
func TestTextDevicePromptCountdown(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		ctx, cancel := context.WithCancel(t.Context())
		d := DeviceCode{UserCode: promptUserCode, VerificationURI: promptURI, Expiry: time.Now().Add(62 * time.Second)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			showDeviceCode(ctx, &out, d, true)
		}()
		frame := regexp.MustCompile("\rWaiting for approval; the code expires in (-?[0-9]+:[0-9]{2}) ")
		frames := func() []string {
			var got []string
			for _, m := range frame.FindAllStringSubmatch(out.String(), -1) {
				got = append(got, m[1])
			}
			return got
		}
		want := func(seconds int) []string {
			var w []string
			for s := range seconds + 1 {
				left := max(62-s, 0)
				w = append(w, fmt.Sprintf("%d:%02d", left/60, left%60))
			}
			return w
		}

		synctest.Wait()
		if got := frames(); !slices.Equal(got, want(0)) {
			t.Fatalf("first frame %q, want %q", got, want(0))
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := frames(); !slices.Equal(got, want(3)) {
			t.Fatalf("after 3s: frames %q, want %q", got, want(3))
		}
		time.Sleep(62 * time.Second) // past the expiry: held at 0:00
		synctest.Wait()
		if got := frames(); !slices.Equal(got, want(65)) {
			t.Fatalf("after 65s: frames %q, want %q", got, want(65))
		}
		select {
		case <-done:
			t.Fatal("the countdown returned before the login ended")
		default:
		}
		cancel()
		<-done
		if s := out.String(); !strings.HasSuffix(s, "\r\033[K") {
			t.Fatalf("the countdown line was not cleared: output ends %q", s[max(len(s)-60, 0):])
		}
	})
}

// qrGrid turns the prompt's QR rows (qrterminal half blocks: one text row
// is two module rows; █ both light, ▀ top light, ▄ bottom light, space both
// dark) into a square grid of modules (true = dark), cut to the code after
// checking that a light quiet zone surrounds it.
func qrGrid(t *testing.T, rows []string) [][]bool {
	t.Helper()
	var px [][]bool
	for i, row := range rows {
		var top, bottom []bool
		for _, r := range row {
			switch r {
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			case '▄':
				top, bottom = append(top, true), append(bottom, false)
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			default:
				t.Fatalf("QR row %d holds %q, not a block character", i, r)
			}
		}
		if len(px) > 0 && len(top) != len(px[0]) {
			t.Fatalf("QR row %d is %d wide, row 1 is %d", i, len(top), len(px[0]))
		}
		px = append(px, top, bottom)
	}
	// The first half row is the terminal above the code: an odd quiet zone
	// is drawn with ▄. The code starts after the first light row.
	start := slices.IndexFunc(px, func(r []bool) bool { return !slices.Contains(r, true) })
	if start < 0 {
		t.Fatal("no light quiet zone above the QR code")
	}
	px = px[start:]
	r0, r1, c0, c1 := len(px), -1, len(px[0]), -1
	for r, row := range px {
		for c, dark := range row {
			if dark {
				r0, r1, c0, c1 = min(r0, r), max(r1, r), min(c0, c), max(c1, c)
			}
		}
	}
	if r0 < 1 || c0 < 1 || r1 > len(px)-2 || c1 > len(px[0])-2 {
		t.Fatalf("no light quiet zone around the QR code (modules at rows %d-%d, columns %d-%d of %dx%d)", r0, r1, c0, c1, len(px), len(px[0]))
	}
	n := r1 - r0 + 1
	if c1-c0+1 != n {
		t.Fatalf("QR code is %dx%d modules, not square", n, c1-c0+1)
	}
	grid := make([][]bool, n)
	for y := range grid {
		grid[y] = px[r0+y][c0 : c0+n]
	}
	return grid
}

// qrDecode reads a QR code of version 1 to 5 at error correction level L
// (one block, so no de-interleaving) holding one byte-mode segment: enough
// to read back what the prompt encodes without a QR library. It checks the
// finder patterns and the format information's BCH code; it corrects no
// errors.
func qrDecode(g [][]bool) (string, int, error) {
	n := len(g)
	v := (n - 17) / 4
	if (n-17)%4 != 0 || v < 1 || v > 5 {
		return "", 0, fmt.Errorf("%d modules a side is not a QR version from 1 to 5", n)
	}
	for _, o := range [][2]int{{0, 0}, {0, n - 7}, {n - 7, 0}} {
		for dr := range 7 {
			for dc := range 7 {
				ring := max(qrAbs(dr-3), qrAbs(dc-3))
				if g[o[0]+dr][o[1]+dc] != (ring != 2) {
					return "", 0, fmt.Errorf("no finder pattern at row %d, column %d", o[0], o[1])
				}
			}
		}
	}
	// Format information, the copy around the top-left finder: 15 bits,
	// masked with 0x5412: level (2 bits), mask (3), BCH(15,5) remainder.
	var fb uint
	for i := range 15 {
		r, c := 8, 14-i
		switch {
		case i < 6:
			r, c = i, 8
		case i < 8:
			r, c = i+1, 8
		case i == 8:
			r, c = 8, 7
		}
		if g[r][c] {
			fb |= 1 << i
		}
	}
	fb ^= 0x5412
	rem := fb >> 10 << 10
	for i := 14; i >= 10; i-- {
		if rem&(1<<i) != 0 {
			rem ^= 0x537 << (i - 10)
		}
	}
	if fb>>10<<10|rem != fb {
		return "", 0, errors.New("format information fails its BCH check")
	}
	if level := fb>>13 ^ 1; level != 0 {
		return "", 0, fmt.Errorf("error correction level %d, want L", level)
	}
	mask := qrMasks[fb>>10&7]
	reserved := func(r, c int) bool {
		switch {
		case r < 9 && c < 9, r < 9 && c >= n-8, r >= n-8 && c < 9, r == 6, c == 6:
			return true // finders, separators, format, timing, dark module
		case v >= 2 && qrAbs(r-(n-7)) <= 2 && qrAbs(c-(n-7)) <= 2:
			return true // the alignment pattern
		}
		return false
	}
	// Data modules in placement order: two-column strips from the right,
	// up then down, skipping the timing column.
	var bits []bool
	take := func(r, c int) {
		if !reserved(r, c) {
			bits = append(bits, g[r][c] != mask(r, c))
		}
	}
	for x := n; x > 0; {
		for y := n - 1; y >= 0; y-- {
			take(y, x-1)
			take(y, x-2)
		}
		if x -= 2; x == 7 {
			x--
		}
		for y := range n {
			take(y, x-1)
			take(y, x-2)
		}
		x -= 2
	}
	dataBytes := []int{0, 19, 34, 55, 80, 108}[v]
	if len(bits) < dataBytes*8 {
		return "", 0, fmt.Errorf("%d data modules, want at least %d", len(bits), dataBytes*8)
	}
	bits = bits[:dataBytes*8]
	read := func(from, nbits int) int {
		x := 0
		for _, b := range bits[from : from+nbits] {
			x <<= 1
			if b {
				x |= 1
			}
		}
		return x
	}
	if mode := read(0, 4); mode != 0b0100 {
		return "", 0, fmt.Errorf("segment mode %04b, want byte mode", mode)
	}
	count := read(4, 8)
	if 12+8*count > len(bits) {
		return "", 0, fmt.Errorf("segment of %d bytes overflows the code", count)
	}
	out := make([]byte, count)
	for i := range out {
		out[i] = byte(read(12+8*i, 8))
	}
	return string(out), v, nil
}

// qrMasks are the eight data masks (row r, column c): a module is flipped
// where the function is true.
var qrMasks = [8]func(r, c int) bool{
	func(r, c int) bool { return (r+c)%2 == 0 },
	func(r, c int) bool { return r%2 == 0 },
	func(r, c int) bool { return c%3 == 0 },
	func(r, c int) bool { return (r+c)%3 == 0 },
	func(r, c int) bool { return (r/2+c/3)%2 == 0 },
	func(r, c int) bool { return r*c%2+r*c%3 == 0 },
	func(r, c int) bool { return (r*c%2+r*c%3)%2 == 0 },
	func(r, c int) bool { return ((r+c)%2+r*c%3)%2 == 0 },
}

func qrAbs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Hosts that may serve the sign-in page without a warning: those on the
// site (registrable domain) of the issuer or the device endpoint; not
// look-alikes, other sites under a shared suffix (github.io), or other
// addresses.
func TestOnHosts(t *testing.T) {
	t.Parallel()
	hosts := []string{"login.example.com", "127.0.0.1", "bob.github.io"}
	for host, want := range map[string]bool{
		"login.example.com":          true,
		"LOGIN.Example.com.":         true,
		"device.login.example.com":   true,
		"example.com":                true,
		"com":                        false,
		"www.example.com":            true, // same site (example.com)
		"alice.github.io":            false,
		"evil-example.com":           false,
		"evil-login.example.com":     true, // example.com runs it
		"login-example.com":          false,
		"example.com.evil.net":       false,
		"login.example.com.evil.net": false,
		"xlogin.example.com":         true,
		"127.0.0.1":                  true,
		"127.0.0.2":                  false,
		"0.0.1":                      false,
		"":                           false,
	} {
		if got := onHosts(host, hosts); got != want {
			t.Errorf("onHosts(%q) = %v, want %v", host, got, want)
		}
	}
}
