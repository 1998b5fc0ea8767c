package webapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const maxDur = time.Duration(1<<63-1) / time.Second * time.Second
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"empty", "", 0, false},
		{"seconds", "120", 120 * time.Second, true},
		{"zero", "0", 0, true},
		{"spaces", " 7 ", 7 * time.Second, true},
		{"negative", "-5", 0, true},
		{"huge", "99999999999999999999", maxDur, true},
		{"http date", "Sun, 01 Mar 2026 12:01:30 GMT", 90 * time.Second, true},
		{"rfc 850 date", "Sunday, 01-Mar-26 12:00:10 GMT", 10 * time.Second, true},
		{"past date", "Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"garbage", "soon", 0, false},
		{"fraction", "1.5", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseRetryAfter(tt.value, now)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()

	base := errors.New("503")
	tests := []struct {
		name      string
		header    http.Header
		wantDelay time.Duration
		wantOK    bool
	}{
		{"no header", nil, 0, false},
		{"seconds", http.Header{"Retry-After": {"30"}}, 30 * time.Second, true},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := RetryAfter(tt.header, base)
			require.ErrorIs(t, err, base)
			require.Equal(t, "503", err.Error())
			d, ok := connector.RetryAfterOf(err)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.wantDelay, d)
		})
	}
}

func TestTransient(t *testing.T) {
	t.Parallel()

	for status, want := range map[int]bool{
		200: false, 301: false, 400: false, 401: false, 404: false, 409: false,
		429: false, // the caller decides, with the upstream's rate-limit headers
		408: true, 425: true, 500: true, 501: true, 503: true, 599: true,
	} {
		require.Equal(t, want, Transient(status), "status %d", status)
	}
}

func TestStatusMessage(t *testing.T) {
	t.Parallel()

	require.Equal(t, "POST /x: 503 Service Unavailable", StatusMessage("POST /x", 503))
	require.Equal(t, "POST /x: 599", StatusMessage("POST /x", 599))
	require.Equal(t, "oauth2 token request: 0", StatusMessage("oauth2 token request", 0))
}

func TestReadResponse(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		body          io.Reader
		wantLen       int
		wantTruncated bool
		wantErr       bool
	}{
		{"empty", strings.NewReader(""), 0, false, false},
		{"small", strings.NewReader(`{"ok":true}`), 11, false, false},
		{"exactly max", strings.NewReader(strings.Repeat("a", MaxBody)), MaxBody, false, false},
		{"over max", strings.NewReader(strings.Repeat("a", MaxBody+1)), MaxBody, true, false},
		{"read error", io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(io.ErrUnexpectedEOF)), 3, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := &closeRecorder{Reader: tt.body}
			res, truncated, err := ReadResponse(&http.Response{StatusCode: 201, Body: body})
			require.Equal(t, tt.wantErr, err != nil, "err: %v", err)
			require.Equal(t, 201, res.Status)
			require.Len(t, res.Body, tt.wantLen)
			require.Equal(t, tt.wantTruncated, truncated)
			require.True(t, body.closed)
		})
	}
}

// closeRecorder is a response body that remembers being closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestDiscardDrainsABoundedRest(t *testing.T) {
	t.Parallel()

	body := &closeRecorder{Reader: strings.NewReader(strings.Repeat("a", maxDrain+10))}
	Discard(&http.Response{Body: body})
	require.True(t, body.closed)
	rest, _ := io.ReadAll(body.Reader)
	require.Len(t, rest, 10)
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		body    string
		want    any
		wantErr string
	}{
		{"object", `{"id": 12345678901234567890}`, map[string]any{"id": json.Number("12345678901234567890")}, ""},
		{"array", `[1, "a"]`, []any{json.Number("1"), "a"}, ""},
		{"trailing space", "true \n", true, ""},
		{"empty", "", nil, "no JSON value (empty input) at offset 0"},
		{"trailing data", `{} {}`, nil, "unexpected data after the JSON value at offset 3"},
		{"not json", `<html>`, nil, "invalid character '<' looking for beginning of value at offset 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeJSON([]byte(tt.body))
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
