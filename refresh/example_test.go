package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/refresh"
)

// memPersister is a minimal in-memory refresh.Persister (store.Memory in
// real programs).
type memPersister struct {
	mu sync.Mutex
	m  map[string]oauth2.Token
}

func (p *memPersister) Load(_ context.Context, key string) (*oauth2.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.m[key]
	if !ok {
		return nil, nil
	}
	return &t, nil
}

func (p *memPersister) Save(_ context.Context, key string, t *oauth2.Token) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[key] = *t
	return nil
}

func (p *memPersister) Delete(_ context.Context, key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, key)
	return nil
}

func ExampleNew() {
	// A refresh-token grant that rotates the refresh token on every call.
	calls := 0
	grant := refresh.UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		if cur == nil || cur.RefreshToken == "" {
			return nil, refresh.ErrReauthRequired
		}
		calls++
		return &oauth2.Token{
			AccessToken:  fmt.Sprintf("access-%d", calls),
			TokenType:    "Bearer",
			RefreshToken: fmt.Sprintf("refresh-%d", calls),
			Expiry:       time.Now().Add(time.Hour),
		}, nil
	})
	// The store holds an expired token from an earlier login.
	store := &memPersister{m: map[string]oauth2.Token{
		"https://issuer.example|cli": {AccessToken: "old", RefreshToken: "refresh-0", Expiry: time.Now().Add(-time.Minute)},
	}}

	c, err := refresh.New("https://issuer.example|cli", grant, func(o *refresh.Options) {
		o.Persister = store
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	tok, err := c.Token(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	again, _ := c.Token(ctx)
	saved, _ := store.Load(ctx, "https://issuer.example|cli")
	fmt.Println("type:", tok.Type())
	fmt.Println("valid:", tok.Valid())
	fmt.Println("refresh token handed out:", tok.RefreshToken != "")
	fmt.Println("same pointer on the next call:", again == tok)
	fmt.Println("rotated refresh token persisted:", saved.RefreshToken == "refresh-1")
	fmt.Println("upstream calls:", calls)
	// Output:
	// type: Bearer
	// valid: true
	// refresh token handed out: false
	// same pointer on the next call: true
	// rotated refresh token persisted: true
	// upstream calls: 1
}

func ExampleTokenSource() {
	// A client-credentials style grant: no refresh token needed.
	grant := refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "service-token", TokenType: "bearer", ExpiresIn: 3600, Expiry: time.Now().Add(time.Hour)}, nil
	})
	c, err := refresh.New("example-token-source", grant)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer service-token" {
			fmt.Fprint(w, "authorized")
			return
		}
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer api.Close()

	// Code written for golang.org/x/oauth2 keeps working.
	hc := oauth2.NewClient(context.Background(), refresh.TokenSource(c))
	resp, err := hc.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// 200 OK
}

func ExampleFromTokenSource() {
	// Any oauth2.TokenSource can feed the cache.
	src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static", Expiry: time.Now().Add(time.Hour)})
	c, err := refresh.New("example-from-token-source", refresh.FromTokenSource(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	tok, err := c.Token(context.Background())
	fmt.Println(tok.Type(), err)
	// Output:
	// Bearer <nil>
}

func ExampleError() {
	// The grant is dead: the authorization server answered invalid_grant.
	grant := refresh.UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return nil, &oauth2.RetrieveError{
			Response:         &http.Response{StatusCode: http.StatusBadRequest},
			ErrorCode:        "invalid_grant",
			ErrorDescription: "refresh token expired",
		}
	})
	c, err := refresh.New("example-error", grant)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, err = c.Token(context.Background())
	var e *refresh.Error
	switch {
	case errors.Is(err, refresh.ErrReauthRequired) && errors.As(err, &e):
		fmt.Println("log in again:", e.Code, e.StatusCode, e.Temporary())
	case errors.Is(err, refresh.ErrTemporarilyUnavailable), errors.Is(err, refresh.ErrNetwork):
		fmt.Println("try later")
	}
	// Output:
	// log in again: invalid_grant 400 false
}
