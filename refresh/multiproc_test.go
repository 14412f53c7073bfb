package refresh

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/oauth2"
)

// fileStore is a test-only Persister and Locker: one JSON file per store,
// written by temp-file-and-rename and read back, and an OS file lock
// (flock) on a sibling lock file, like store's file backends.
type fileStore struct{ path string }

type fileEntry struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
}

func (s fileStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e fileEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: e.AccessToken, TokenType: e.TokenType, RefreshToken: e.RefreshToken, Expiry: e.Expiry}, nil
}

func (s fileStore) Save(ctx context.Context, key string, t *oauth2.Token) error {
	b, err := json.Marshal(fileEntry{t.AccessToken, t.TokenType, t.RefreshToken, t.Expiry})
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	back, err := os.ReadFile(s.path)
	if err != nil || !bytes.Equal(back, b) {
		return fmt.Errorf("filestore: read-back mismatch: %v", err)
	}
	return nil
}

func (s fileStore) Delete(ctx context.Context, key string) error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s fileStore) Lock(ctx context.Context, key string) (func() error, error) {
	l := flock.New(s.path + ".lock")
	ok, err := l.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("filestore: lock not acquired")
	}
	return l.Unlock, nil
}

// rotatingServer is the rotating fake as an HTTP token endpoint that counts
// requests.
type rotatingServer struct {
	as       *rotatingAS
	mu       sync.Mutex
	requests int
}

func (s *rotatingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	time.Sleep(100 * time.Millisecond) // a slow endpoint widens the race window (not synchronisation)
	tok, err := s.as.Token(r.Context(), &oauth2.Token{RefreshToken: r.PostForm.Get("refresh_token")})
	w.Header().Set("Content-Type", "application/json")
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": re.ErrorCode, "error_description": re.ErrorDescription})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok.AccessToken, "token_type": "Bearer", "refresh_token": tok.RefreshToken,
		"expires_in": int(time.Until(tok.Expiry).Seconds()),
	})
}

// httpUpstream refreshes through x/oauth2 against tokenURL (explicit auth
// style: a credential is never POSTed twice to learn the auth style).
func httpUpstream(tokenURL string) Upstream {
	cfg := &oauth2.Config{ClientID: "cli", Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		if cur == nil || cur.RefreshToken == "" {
			return nil, ErrReauthRequired
		}
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: cur.RefreshToken}).Token()
	})
}

const helperEnv = "TOKENWARD_REFRESH_HELPER"

// 5 processes sharing one store at expiry make exactly one
// token request and all get the new token. The control run hides the
// store's lock: the same processes then refresh concurrently and the
// server's reuse detection fires, which shows the test can fail.
func TestCrossProcessSingleRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 processes")
	}
	t.Parallel()
	for _, tc := range []struct {
		name   string
		noLock bool
	}{{"locked", false}, {"control: no lock", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requests, reuses, results := runProcesses(t, 5, tc.noLock)
			if tc.noLock {
				if requests < 2 || reuses == 0 {
					t.Fatalf("without the lock: %d requests, %d reuses; the scenario did not race", requests, reuses)
				}
				return
			}
			for i, r := range results {
				if r.Err != "" || r.AccessToken != "at-1" {
					t.Errorf("process %d: token %q, error %q; want at-1", i, r.AccessToken, r.Err)
				}
			}
			if requests != 1 || reuses != 0 {
				t.Fatalf("token requests = %d (reuses %d), want exactly 1", requests, reuses)
			}
		})
	}
}

type procResult struct {
	AccessToken string `json:"access_token"`
	Err         string `json:"err"`
}

// runProcesses starts n copies of the test binary sharing one file store
// and one rotating token server, lets them call Token at the same moment
// and returns the server's request count, its reuse detections and what
// each process got.
func runProcesses(t *testing.T, n int, noLock bool) (requests, reuses int, results []procResult) {
	as := newRotatingAS(time.Hour)
	srv := &rotatingServer{as: as}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	store := fileStore{path: filepath.Join(t.TempDir(), "token.json")}
	if err := store.Save(t.Context(), "k", as.initial(time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		out    *bufio.Scanner
		stderr bytes.Buffer
	}
	procs := make([]*proc, n)
	for i := range procs {
		p := &proc{cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")}
		p.cmd.Env = append(os.Environ(), helperEnv+"=1", "TW_STORE="+store.path, "TW_URL="+ts.URL)
		if noLock {
			p.cmd.Env = append(p.cmd.Env, "TW_NOLOCK=1")
		}
		p.cmd.Stderr = &p.stderr
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.out = bufio.NewScanner(stdout)
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	// Barrier: every process has built its cache before any asks for a token.
	for i, p := range procs {
		if !scanFor(p.out, "READY") {
			t.Fatalf("process %d never got ready: %s", i, p.stderr.String())
		}
	}
	for _, p := range procs {
		io.WriteString(p.stdin, "go\n")
		p.stdin.Close()
	}
	results = make([]procResult, n)
	for i, p := range procs {
		found := false
		for p.out.Scan() {
			if line := p.out.Bytes(); bytes.HasPrefix(line, []byte("RESULT ")) {
				if err := json.Unmarshal(line[len("RESULT "):], &results[i]); err != nil {
					t.Fatal(err)
				}
				found = true
			}
		}
		if err := p.cmd.Wait(); err != nil || !found {
			t.Fatalf("process %d: %v (result found: %v)\n%s", i, err, found, p.stderr.String())
		}
	}
	srv.mu.Lock()
	requests = srv.requests
	srv.mu.Unlock()
	_, reuses, _ = as.stats()
	return requests, reuses, results
}

func scanFor(sc *bufio.Scanner, want string) bool {
	for sc.Scan() {
		if sc.Text() == want {
			return true
		}
	}
	return false
}

// noLockStore hides fileStore's Lock method.
type noLockStore struct{ s fileStore }

func (n noLockStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	return n.s.Load(ctx, key)
}
func (n noLockStore) Save(ctx context.Context, key string, t *oauth2.Token) error {
	return n.s.Save(ctx, key, t)
}
func (n noLockStore) Delete(ctx context.Context, key string) error { return n.s.Delete(ctx, key) }

// TestHelperProcess is one process of TestCrossProcessSingleRefresh; it does
// nothing unless started by it.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestCrossProcessSingleRefresh")
	}
	var p Persister = fileStore{path: os.Getenv("TW_STORE")}
	if os.Getenv("TW_NOLOCK") == "1" {
		p = noLockStore{p.(fileStore)}
	}
	c, err := New("cross-process", httpUpstream(os.Getenv("TW_URL")+"/token"), func(o *Options) {
		o.Persister = p
		o.DisableIdleRefresh = true
	})
	var r procResult
	if err == nil {
		fmt.Println("READY")
		bufio.NewReader(os.Stdin).ReadString('\n') // wait for the parent's go
		var tok *oauth2.Token
		tok, err = c.Token(t.Context())
		if err == nil {
			r.AccessToken = tok.AccessToken
		}
		c.Close()
	}
	if err != nil {
		r.Err = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}
