package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tokenward/tokenward/store"
)

// RunProcessStampede starts one fake server with sockets, stores an access
// token that has just expired, starts cfg.Processes copies of
// cfg.Executable in child mode and, once every one of them has built its
// client, tells them all at once to send one API request; then it counts
// the token-endpoint calls.
//
// tokenward's processes each build a client.New on the same store
// (cfg.StoreMode under cfg.Dir); the store's file lock serialises their
// refreshes. x/oauth2's processes follow the usual hand-written pattern:
// read the token from a JSON file, wrap it in a TokenSource, send the
// request (the source refreshes the expired token), and write the token back
// if it changed; nothing serialises them.
func RunProcessStampede(ctx context.Context, cfg StampedeConfig, which string) (StampedeResult, error) {
	cfg = cfg.withDefaults()
	res := StampedeResult{Case: "processes", N: cfg.Processes, Client: which, Grant: cfg.Grant}
	if which != Tokenward && which != XOAuth2 {
		return res, fmt.Errorf("bench: unknown client %q", which)
	}
	if cfg.StoreMode == store.ModeMemory && which == Tokenward {
		return res, errors.New("bench: processes cannot share a memory store")
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return res, err
		}
	}
	fx, err := newFixture(time.Hour, cfg.TokenLatency, false, 2)
	if err != nil {
		return res, err
	}
	defer fx.close()
	tok, err := fx.expiredToken(cfg.Grant)
	if err != nil {
		return res, err
	}
	dir, cleanup, err := tempDir(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	cc := childConfig{
		Client: which, Grant: cfg.Grant, Issuer: fx.as.Issuer(), TokenURL: fx.as.TokenURL(), APIURL: fx.api.URL(),
		Secret: fx.secret, StoreMode: cfg.StoreMode, Dir: dir, Passphrase: randomPassphrase(),
		TokenFile: filepath.Join(dir, "token.json"),
	}
	switch which {
	case Tokenward:
		st, err := store.Open(ctx, storeOptions(cc.StoreMode, cc.Dir, cc.Passphrase))
		if err != nil {
			return res, fmt.Errorf("bench: opening the store: %w", err)
		}
		remove, err := fx.seedTokenward(ctx, st, cfg.Grant, tok)
		if err != nil {
			return res, err
		}
		defer remove()
	case XOAuth2:
		if err := writeTokenFile(cc.TokenFile, tok); err != nil {
			return res, err
		}
	}
	fx.as.ResetStats()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	procs := make([]*child, cfg.Processes)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i := range procs {
		p, err := startChild(ctx, exe, cfg.ChildArgs, cc)
		if err != nil {
			return res, err
		}
		procs[i] = p
	}
	// Barrier: every process has built its client before any request.
	for i, p := range procs {
		if err := p.expect(lineReady); err != nil {
			return res, fmt.Errorf("bench: process %d did not get ready: %w", i, err)
		}
	}
	t0 := time.Now()
	for _, p := range procs {
		io.WriteString(p.stdin, lineGo+"\n")
		p.stdin.Close()
	}
	for i, p := range procs {
		r, err := p.result()
		if err != nil {
			return res, fmt.Errorf("bench: process %d: %w", i, err)
		}
		if r.OK {
			res.count(nil)
		} else {
			res.count(errors.New(r.Error))
		}
	}
	res.Elapsed = time.Since(t0)
	res.serverStats(fx.as)
	return res, nil
}

// child is one re-executed process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	stderr *lockedBuffer
}

func startChild(ctx context.Context, exe string, args []string, cc childConfig) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	p := &child{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", exe, err)
	}
	b, _ := json.Marshal(cc)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("bench: configuring a process: %w", err)
	}
	return p, nil
}

// expect reads lines until want; anything else is an error.
func (p *child) expect(want string) error {
	if p.out.Scan() && p.out.Text() == want {
		return nil
	}
	return fmt.Errorf("expected %s; stderr: %s", want, p.stderr.tail())
}

// result reads the process's result line and waits for it to exit.
func (p *child) result() (childResult, error) {
	var r childResult
	found := false
	for p.out.Scan() {
		if line, ok := strings.CutPrefix(p.out.Text(), lineResult); ok {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return r, err
			}
			found = true
		}
	}
	err := p.cmd.Wait()
	p.cmd = nil
	if err != nil || !found {
		return r, fmt.Errorf("exit %v, result found: %v; stderr: %s", err, found, p.stderr.tail())
	}
	return r, nil
}

// stop kills a process that has not been waited for.
func (p *child) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

// tail returns the end of the output (children print no secret).
func (l *lockedBuffer) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := string(l.b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}
