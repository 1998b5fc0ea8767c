package email_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/email"
)

// TestSMTPSilentServerTimesOut: a server that accepts the connection and
// never greets (a wrong port, a stuck relay) fails the send within the
// configured timeout, transiently, instead of holding the worker.
func TestSMTPSilentServerTimesOut(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	sc := &email.SMTPConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Username: smtpUser, Password: smtpPassword}
	cfg := &email.Config{Transport: "smtp", SMTP: sc, From: "Acme Plumbing <office@acme.example>", Timeout: time.Second}
	sys, err := emailKind(t).Open(connector.OpenParams{Name: "mail", Config: cfg})
	require.NoError(t, err)
	started := time.Now()
	_, err = sendMail(t, sys, map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"})
	require.Error(t, err)
	require.False(t, connector.IsPermanent(err))
	require.Less(t, time.Since(started), 30*time.Second, "the send did not hang")
}
