package httpcall_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/httpcall"
)

func TestClassification(t *testing.T) {
	t.Parallel()

	const (
		ok = iota
		transient
		permanent
	)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		want       int
		wantAfter  time.Duration // ±5s, for dates
		afterOK    bool          // whether the error carries a Retry-After
		wantOutput any
	}{
		{name: "200 json", status: 200, body: `{"id":1}`, want: ok, wantOutput: map[string]any{"id": json.Number("1")}},
		{name: "201 json", status: 201, body: `[true]`, want: ok, wantOutput: []any{true}},
		{name: "204", status: 204, want: ok},
		{name: "302 not followed", status: 302, want: permanent},
		{name: "400", status: 400, body: "bad", want: permanent},
		{name: "401", status: 401, want: permanent},
		{name: "404", status: 404, want: permanent},
		{name: "408", status: 408, want: transient},
		{name: "409", status: 409, want: permanent},
		{name: "425", status: 425, want: transient},
		{name: "429", status: 429, want: transient},
		{name: "429 retry-after seconds", status: 429, retryAfter: "120", want: transient, wantAfter: 120 * time.Second, afterOK: true},
		{name: "429 retry-after date", status: 429, retryAfter: time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat),
			want: transient, wantAfter: 90 * time.Second, afterOK: true},
		{name: "429 retry-after past date", status: 429, retryAfter: "Mon, 02 Jan 2006 15:04:05 GMT", want: transient, afterOK: true},
		{name: "429 retry-after garbage", status: 429, retryAfter: "soon", want: transient},
		{name: "500", status: 500, want: transient},
		{name: "502", status: 502, want: transient},
		{name: "503 retry-after seconds", status: 503, retryAfter: "3", want: transient, wantAfter: 3 * time.Second, afterOK: true},
		{name: "504", status: 504, want: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			sys := openSystem(t, &httpcall.Config{BaseURL: up.URL})
			res, err := call(t, sys, map[string]any{"path": "/x"})
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, tt.body, string(res.Body))
			require.Equal(t, 1, up.Count(), "redirects and retries are not followed")

			switch tt.want {
			case ok:
				require.NoError(t, err)
				require.Equal(t, tt.wantOutput, res.Output)
				return
			case transient:
				require.Error(t, err)
				require.False(t, connector.IsPermanent(err))
			case permanent:
				require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			}
			require.Nil(t, res.Output)
			after, hasAfter := connector.RetryAfterOf(err)
			require.Equal(t, tt.afterOK, hasAfter)
			require.InDelta(t, tt.wantAfter, after, float64(5*time.Second))
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()

	body := "line one\r\n\tline two " + strings.Repeat("é", 200)
	up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, body)
	})
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL + "/api"})
	_, err := call(t, sys, map[string]any{"path": "/contacts", "body": map[string]any{}})
	require.Error(t, err)
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, "POST /contacts: 503 Service Unavailable: line one line two éé"), msg)
	require.NotContains(t, msg, "\n")
	require.Less(t, len(msg), len("POST /contacts: 503 Service Unavailable: ")+200)
}

func TestConnectionReset(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL})
	res, err := call(t, sys, map[string]any{"path": "/x", "body": map[string]any{"a": 1.0}})
	require.Error(t, err)
	require.False(t, connector.IsPermanent(err), "a broken connection must be retried: %v", err)
	require.True(t, strings.HasPrefix(err.Error(), "POST /x: "), err.Error())
	require.Zero(t, res.Status)
}

func TestTimeout(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := call(t, sys, map[string]any{"path": "/slow"})
	require.Less(t, time.Since(start), 3*time.Second)
	require.Error(t, err)
	require.False(t, connector.IsPermanent(err))
	var netErr net.Error
	require.ErrorAs(t, err, &netErr)
	require.True(t, netErr.Timeout())
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()

	started := make(chan struct{})
	up := connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL})
	act, ok := sys.Action("request")
	require.True(t, ok)

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := act.Do(ctx, connector.Request{Input: map[string]any{"path": "/wait"}})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, connector.IsPermanent(err))
}

func TestOutput(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		contentType string
		body        string
		want        any
	}{
		{"json numbers kept exact", "application/json; charset=utf-8", `{"id": 12345678901234567890, "f": 1.5}`,
			map[string]any{"id": json.Number("12345678901234567890"), "f": json.Number("1.5")}},
		{"problem json", "application/problem+json", `"done"`, "done"},
		{"json without content type", "text/plain", ` {"ok": true} `, map[string]any{"ok": true}},
		{"text", "text/plain", "OK", "OK"},
		{"text that is a json number stays text", "text/plain", "42", "42"},
		{"invalid json falls back to text", "application/json", `{"a":`, `{"a":`},
		{"trailing data falls back to text", "application/json", `{} {}`, `{} {}`},
		{"empty body", "application/json", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, tt.body)
			})
			res, err := call(t, openSystem(t, &httpcall.Config{BaseURL: up.URL}), nil)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.Output)
		})
	}
}

func TestBodyTruncation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		size       int
		wantLen    int
		wantOutput bool
	}{
		{"exactly 64 KiB", 64 << 10, 64 << 10, true},
		{"over 64 KiB", 1 << 20, 64 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, strings.Repeat("x", tt.size))
			})
			res, err := call(t, openSystem(t, &httpcall.Config{BaseURL: up.URL}), nil)
			require.NoError(t, err)
			require.Len(t, res.Body, tt.wantLen)
			require.Equal(t, tt.wantOutput, res.Output != nil)
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()

	// echo answers 401 with everything it got, as some APIs do.
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, r.RequestURI+" "+r.Header.Get("Authorization")+" "+r.Header.Get("X-Key"))
	}
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()

	tests := []struct {
		name    string
		handler http.HandlerFunc
		base    string // defaults to the handler's server
		auth    httpcall.Auth
	}{
		{"bearer echoed", echo, "", httpcall.Auth{Bearer: token}},
		{"basic echoed", echo, "", httpcall.Auth{Basic: &httpcall.BasicAuth{User: "ann", Password: token}}},
		{"api_key header echoed", echo, "", httpcall.Auth{APIKey: &httpcall.APIKeyAuth{Header: "X-Key", Value: token}}},
		{"api_key query echoed", echo, "", httpcall.Auth{APIKey: &httpcall.APIKeyAuth{Query: "key", Value: token}}},
		{"api_key query connection refused", nil, refused.URL, httpcall.Auth{APIKey: &httpcall.APIKeyAuth{Query: "key", Value: token}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := tt.base
			if base == "" {
				base = connectortest.NewUpstream(t, tt.handler).URL
			}
			sys := openSystem(t, &httpcall.Config{BaseURL: base, Auth: tt.auth})
			_, err := call(t, sys, map[string]any{"path": "/me", "query": map[string]any{"q": "1"}})
			require.Error(t, err)
			for e := err; e != nil; e = errors.Unwrap(e) {
				require.NotContains(t, e.Error(), token)
				require.NotContains(t, e.Error(), "s3cr3t-T0ken%2F")
				require.NotContains(t, e.Error(), "YW5uOnMzY3IzdC1UMGtlbi8rPQ") // base64("ann:"+token)
			}
		})
	}
}
