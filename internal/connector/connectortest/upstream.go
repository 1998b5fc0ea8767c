// Package connectortest is what connector tests share: a fake upstream
// server that records every request it gets, a checker of requests against
// vendors' OpenAPI specs, and a check that errors keep secrets out. Only
// tests import it.
package connectortest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Request is what an upstream saw of one request.
type Request struct {
	Method string
	// RequestURI is the path and query as sent, still escaped.
	RequestURI string
	Header     http.Header
	Body       string
}

// Upstream is an httptest server that records every request before
// answering it. It is safe for concurrent use.
type Upstream struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:34567".
	URL string

	mu   sync.Mutex // guards the fields below
	reqs []Request
}

// NewUpstream starts a recording server answering with h, or with 200 and
// "{}" as JSON when h is nil. The server closes when t ends.
func NewUpstream(t testing.TB, h http.HandlerFunc) *Upstream {
	t.Helper()
	u := &Upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, Request{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
		u.mu.Unlock()
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{}")
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// Count returns how many requests the upstream got.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Requests returns every request the upstream got, oldest first.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.reqs...)
}

// Last returns the latest request, failing t when there was none.
func (u *Upstream) Last(t testing.TB) Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.NotEmpty(t, u.reqs, "upstream got no request")
	return u.reqs[len(u.reqs)-1]
}

// JSON answers every request with status and body as application/json.
func JSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// NoSecrets fails t when the text of err, or of any error it wraps, contains
// one of the secrets.
func NoSecrets(t testing.TB, err error, secrets ...string) {
	t.Helper()
	require.Error(t, err)
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(e.Error(), s) {
				t.Errorf("error %q contains a secret", e.Error())
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
}
