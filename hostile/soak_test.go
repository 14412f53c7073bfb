package hostile

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Soak parameters. TOKENWARD_SOAK (a Go duration) sets the faulty phase;
// TOKENWARD_SOAK_PROCS and TOKENWARD_SOAK_GOROUTINES the load.
const (
	soakDefault       = 15 * time.Second
	soakQuiet         = 3 * time.Second // faults off, load on, before the children close
	soakTokenLifetime = 2 * time.Second
	// soakGrace is the default server reuse grace and client RotationGrace:
	// none, so that every presentation of a consumed refresh token counts
	// as a reuse. TOKENWARD_SOAK_GRACE turns a window (and the lost-response
	// faults only a window survives) on.
	soakGrace = 0
)

// envInt returns the positive integer in the environment variable name, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// soakGraceWindow is the reuse grace of the server and the client's
// RotationGrace: soakGrace (none), or TOKENWARD_SOAK_GRACE (a Go duration,
// e.g. 10s). Without a window the lost-response faults, which only a grace
// window survives, are not injected.
func soakGraceWindow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("TOKENWARD_SOAK_GRACE")); err == nil && d >= 0 {
		return d
	}
	return soakGrace
}

// soakDuration is the faulty phase: TOKENWARD_SOAK, or soakDefault.
func soakDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("TOKENWARD_SOAK")); err == nil && d > 0 {
		return d
	}
	return soakDefault
}

// soakResult is what one soak child reports.
type soakResult struct {
	Requests, OK   int
	Status         map[int]int    // API answers other than 200
	Errors         map[string]int // failed requests by error kind
	Latency        []int64        // p50, p99, max of API calls (ms)
	Events         map[string]int // client events by kind
	Reauth         int            // forced re-logins: 1 when the process saw EventReauthRequired
	ReauthEvents   int            // EventReauthRequired events (repeated while logged out)
	StoreFaults    map[string]int // faults injected into this child's store
	GoroutineLeak  int            // goroutines left after Close, above the baseline
	LeakedStacks   string         `json:",omitempty"`
	ErrorsRecorded int            // distinct error strings written for the scan
}

// TestSoak is the randomized soak: several processes with many goroutines
// each share one encrypted-file store and one login against a server
// issuing 2 s tokens, while faults are injected at random into the token
// endpoint (5xx, 429, resets, delays, responses lost after rotation) and
// into each process's store (failed and slow reads, writes and locks).
// Then the faults stop for a quiet phase, the processes close, and the test
// counts forced re-logins, lost tokens, reused refresh tokens, leaked
// secrets and leaked goroutines, all of which must be zero.
//
// By default there is no reuse grace window, so any presentation of a
// refresh token the server had consumed counts as a reuse and fails the
// test. Responses lost after rotation are survivable only with a window
// (server) and RotationGrace (client); without them each lost response
// legitimately ends in a re-login (see the matrix rows
// response-lost-after-rotation and server-rotated-response-in-flight), so
// they are injected only when TOKENWARD_SOAK_GRACE sets a window. Then
// re-presentations inside the window are tolerated, but the server may
// accept no more of them as grace reuses than lost responses fired.
//
// Without TOKENWARD_SOAK_GRACE it runs twice, side by side: with no window,
// and with a 10 s window and lost responses injected.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	t.Parallel()
	graces := []time.Duration{soakGrace, 10 * time.Second}
	if _, set := os.LookupEnv("TOKENWARD_SOAK_GRACE"); set {
		graces = []time.Duration{soakGraceWindow()}
	}
	for _, grace := range graces {
		t.Run("grace="+grace.String(), func(t *testing.T) {
			t.Parallel()
			soak(t, grace)
		})
	}
}

// soak is one run of TestSoak with the given reuse grace window.
func soak(t *testing.T, grace time.Duration) {
	dur := soakDuration()
	procs := envInt("TOKENWARD_SOAK_PROCS", 3)
	goroutines := envInt("TOKENWARD_SOAK_GOROUTINES", 8)
	asLog := &syncBuffer{}
	as := oauthtest.Start(t, oauthtest.Config{AccessTokenLifetime: soakTokenLifetime, ReuseGrace: grace,
		Logger: slog.New(slog.NewTextHandler(asLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	api := oauthtest.StartAPI(t, as, "")
	dir := t.TempDir()
	env := childEnv{Issuer: as.Issuer(), Resource: api.Resource(), Mode: store.ModeEncryptedFile,
		Dir: filepath.Join(dir, "data"), LockDir: filepath.Join(dir, "locks"), Passphrase: "hostile-soak", Grace: grace}
	st, err := env.openStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	key := store.Key{Issuer: as.Issuer(), ClientID: oauthtest.DefaultClientID, Scopes: []string{"read"}, Resource: []string{api.Resource()}}.String()
	tok, err := as.Mint(oauthtest.Grant{Scope: "read", Resources: []string{api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(t.Context(), key, store.EntryFromToken(tok)); err != nil {
		t.Fatal(err)
	}

	children := make([]*child, procs)
	for i := range children {
		ce := env
		children[i] = startChildWith(t, "soak", ce, []string{
			"HOSTILE_SOAK_DURATION=" + dur.String(),
			"HOSTILE_SOAK_GOROUTINES=" + strconv.Itoa(goroutines),
			"HOSTILE_SOAK_SEED=" + strconv.FormatUint(rand.Uint64(), 10),
			"HOSTILE_SOAK_LOG=" + filepath.Join(dir, fmt.Sprintf("child-%d.log", i)),
			"HOSTILE_SOAK_ERRORS=" + filepath.Join(dir, fmt.Sprintf("child-%d.errors", i)),
		})
	}
	for _, ch := range children {
		ch.await(t, "READY", 60*time.Second)
	}
	for _, ch := range children {
		io.WriteString(ch.stdin, "go\n")
	}

	// Server faults during the faulty phase, one or two pending at a time.
	faults := []oauthtest.Fault{
		{Kind: oauthtest.FaultStatus500}, {Kind: oauthtest.FaultBadGateway}, {Kind: oauthtest.FaultUnavailable},
		{Kind: oauthtest.FaultRateLimited, RetryAfter: "1"}, {Kind: oauthtest.FaultReset}, {Kind: oauthtest.FaultResponseLost},
		{Kind: oauthtest.FaultDelay, Delay: 300 * time.Millisecond}, {Kind: oauthtest.FaultDelay, Delay: 1200 * time.Millisecond},
	}
	if grace == 0 {
		faults = slices.DeleteFunc(faults, func(f oauthtest.Fault) bool { return f.Kind == oauthtest.FaultResponseLost })
	}
	injectedFaults := map[string]int{}
	stop := time.Now().Add(dur)
	tick := time.NewTicker(150 * time.Millisecond)
	for time.Now().Before(stop) {
		<-tick.C
		if as.PendingFaults() < 2 {
			f := faults[rand.IntN(len(faults))]
			f.Endpoint, f.Grant, f.Times = oauthtest.EndpointToken, oauthtest.GrantRefreshToken, 1
			as.InjectFault(f)
			name := f.Kind.String()
			if f.Kind == oauthtest.FaultDelay {
				name += "-" + f.Delay.String()
			}
			injectedFaults[name]++
		}
	}
	tick.Stop()
	as.ClearFaults()
	firedFaults := as.Stats().Faults

	results := make([]soakResult, procs)
	var scan strings.Builder
	for i, ch := range children {
		line := ch.await(t, "RESULT ", dur+soakQuiet+60*time.Second)
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &results[i]); err != nil {
			t.Fatal(err)
		}
		if err := ch.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, ch.stderr.String())
		}
		if s := ch.stderr.String(); strings.Contains(s, "DATA RACE") {
			t.Fatalf("data race in child %d:\n%s", i, s)
		}
		scan.WriteString(ch.stdout.String())
		scan.WriteString(ch.stderr.String())
		for _, f := range []string{"log", "errors"} {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("child-%d.%s", i, f)))
			if err != nil {
				t.Fatal(err)
			}
			scan.Write(b)
		}
	}
	scan.WriteString(asLog.String())

	// The figures.
	var total soakResult
	total.Status, total.Errors, total.Events, total.StoreFaults = map[int]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	maxLat := int64(0)
	var p99 []int64
	for i, r := range results {
		total.Requests += r.Requests
		total.OK += r.OK
		total.Reauth += r.Reauth
		total.ReauthEvents += r.ReauthEvents
		total.GoroutineLeak += r.GoroutineLeak
		total.ErrorsRecorded += r.ErrorsRecorded
		mergeInt(total.Status, r.Status)
		mergeStr(total.Errors, r.Errors)
		mergeStr(total.Events, r.Events)
		mergeStr(total.StoreFaults, r.StoreFaults)
		if len(r.Latency) == 3 {
			maxLat = max(maxLat, r.Latency[2])
			p99 = append(p99, r.Latency[1])
		}
		if r.GoroutineLeak > 0 {
			t.Errorf("child %d leaked %d goroutines:\n%s", i, r.GoroutineLeak, r.LeakedStacks)
		}
	}
	sst := as.Stats()
	stored, err := st.Load(t.Context(), key)
	lost := 0
	if err != nil {
		lost = 1
		t.Errorf("the store holds no readable token set at the end: %v", err)
	} else if info, known := as.Introspect(stored.RefreshToken); !known || !info.Active {
		lost = 1
		t.Errorf("the stored refresh token is not usable at the end (%+v): the live token was lost", info)
	}
	leaks := findSecrets(scan.String())
	kinds := make([]string, 0, len(firedFaults))
	for k, n := range firedFaults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)

	t.Logf("SOAK %v faulty + %v quiet, %d processes x %d goroutines, one encrypted-file store, %v tokens, %v reuse grace",
		dur, soakQuiet, procs, goroutines, soakTokenLifetime, grace)
	t.Logf("SOAK load: %d calls, %d ok, failed by kind %v, non-200 %v; latency p99 per process %v ms, max %d ms",
		total.Requests, total.OK, total.Errors, total.Status, p99, maxLat)
	t.Logf("SOAK server: %d refresh requests, %d access tokens issued, server faults fired %v (%d), %d refresh tokens presented more than once",
		sst.Grants[oauthtest.GrantRefreshToken], sst.AccessTokensIssued, strings.Join(kinds, " "), sumFaults(firedFaults), sst.RefreshTokensPresentedTwice)
	t.Logf("SOAK store faults injected %v; client events %v", total.StoreFaults, total.Events)
	inside, replays := countReplays(as, grace)
	t.Logf("SOAK rotated refresh tokens presented again: %d inside the %v grace window (%d accepted as grace reuses, the rest answered by an injected fault first), %d outside it",
		inside, grace, sst.GraceReuses, replays)
	t.Logf("SOAK RESULT forced re-logins=%d (processes that had to log in again; %d re-auth events) tokens lost=%d refresh tokens reused=%d (reuse detections %d, family revocations %d) leaks=%d goroutine leaks=%d (scanned %d bytes, %d distinct errors)",
		total.Reauth, total.ReauthEvents, lost, replays, sst.ReuseDetections, sst.FamilyRevocations, len(leaks), total.GoroutineLeak, scan.Len(), total.ErrorsRecorded)

	if total.Reauth != 0 {
		t.Errorf("%d processes were forced to log in again", total.Reauth)
	}
	if replays != 0 {
		t.Logf("SOAK presentations %s", describePresentations(as))
	}
	if replays != 0 || sst.ReuseDetections != 0 || sst.FamilyRevocations != 0 {
		t.Errorf("refresh tokens reused: %d presentations of consumed refresh tokens outside the grace window (%v), %d reuse detections, %d family revocations",
			replays, grace, sst.ReuseDetections, sst.FamilyRevocations)
	}
	if lostFired := firedFaults[oauthtest.FaultResponseLost]; sst.GraceReuses > lostFired {
		t.Errorf("%d grace reuses accepted but only %d responses lost after rotation: a refresh token was replayed without a lost answer to excuse it", sst.GraceReuses, lostFired)
	}
	if len(leaks) != 0 {
		t.Errorf("secrets in logs, errors or output: %v", leaks)
	}
	if total.OK == 0 || sst.Grants[oauthtest.GrantRefreshToken] < 2 {
		t.Errorf("the soak did too little to prove anything: %d ok calls, %d refreshes", total.OK, sst.Grants[oauthtest.GrantRefreshToken])
	}
	if u := total.Errors["untyped"]; u != 0 {
		t.Errorf("%d failures matched no sentinel", u)
	}
}

// countReplays counts presentations of a refresh token the server had
// already consumed (rotated): inside the reuse grace window of its first
// use (the server accepted it, or an injected fault answered first) and
// outside it (a reuse the server detects and punishes, or one an injected
// fault happened to answer first). Without a window (grace 0) every such
// presentation is outside.
func countReplays(as *oauthtest.Server, grace time.Duration) (inside, outside int) {
	consumedAt := map[string]time.Time{}
	for _, p := range as.RefreshPresentations() {
		if at, ok := consumedAt[p.Token]; ok {
			if grace > 0 && p.At.Sub(at) <= grace && p.Outcome != oauthtest.RefreshReuseDetected {
				inside++
			} else {
				outside++
			}
			continue
		}
		if p.Outcome == oauthtest.RefreshRotated {
			consumedAt[p.Token] = p.At
		}
	}
	return inside, outside
}

// mergeInt adds src's counts to dst.
func mergeInt(dst, src map[int]int) {
	for k, v := range src {
		dst[k] += v
	}
}

// mergeStr adds src's counts to dst.
func mergeStr(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

// sumFaults totals the fired faults.
func sumFaults(m map[oauthtest.FaultKind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
