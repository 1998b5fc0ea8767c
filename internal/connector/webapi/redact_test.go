package webapi

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	t.Parallel()

	r := strings.NewReplacer("s3cret", "[redacted]")
	tests := []struct {
		name      string
		msg       string
		cause     error
		want      string
		wantCause bool
	}{
		{"clean", "send: boom", errors.New("boom"), "send: boom", true},
		{"secret in msg only", "send s3cret: boom", errors.New("boom"), "send [redacted]: boom", true},
		{"secret in cause", "send: echo s3cret", errors.New("echo s3cret"), "send: echo [redacted]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Redact(r, tt.msg, tt.cause)
			require.EqualError(t, err, tt.want)
			require.Equal(t, tt.wantCause, errors.Is(err, tt.cause))
		})
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()

	cause := errors.New("echo s3cret")
	err := Redacted("call: [redacted]", cause)
	require.EqualError(t, err, "call: [redacted]")
	require.ErrorIs(t, err, cause)
}

func TestTransportError(t *testing.T) {
	t.Parallel()

	r := strings.NewReplacer("k3y", "[redacted]")
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		err       error
		want      string
		wantCause error
	}{
		{
			"url error loses its URL",
			context.Background(),
			&url.Error{Op: "Post", URL: "https://api.example.com/x?key=k3y", Err: refused},
			"POST /x: dial tcp: connection refused",
			refused,
		},
		{
			"ended ctx wins",
			canceled,
			&url.Error{Op: "Post", URL: "https://api.example.com/x", Err: refused},
			"POST /x: context canceled",
			context.Canceled,
		},
		{
			"secret in cause is scrubbed and unlinked",
			context.Background(),
			errors.New("bad key k3y"),
			"POST /x: bad key [redacted]",
			nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := TransportError(tt.ctx, r, "POST /x", tt.err)
			require.EqualError(t, err, tt.want)
			require.Equal(t, tt.wantCause, errors.Unwrap(err))
		})
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "bad request", "bad request"},
		{"controls and runs", "  line one\r\n\tline\x00two  ", "line one line two"},
		{"cut with ellipsis", strings.Repeat("a", MaxMessage+5), strings.Repeat("a", MaxMessage) + "…"},
		{"cut inside a rune", strings.Repeat("a", MaxMessage-1) + "é", strings.Repeat("a", MaxMessage-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, OneLine(tt.in))
		})
	}
}

func TestSqueeze(t *testing.T) {
	t.Parallel()

	require.Equal(t, "a b c", Squeeze(" a\n\nb\x7fc "))
	long := strings.Repeat("a", MaxMessage+5)
	require.Equal(t, long, Squeeze(long), "Squeeze does not cut")
}
