package email_test

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/email"
)

const (
	smtpUser     = "mailer"
	smtpPassword = "s3cr3t-smtp-Passw0rd"
)

// received is one message the test server accepted.
type received = connectortest.SMTPMessage

// smtpServer is connectortest's in-process SMTP server, with STARTTLS under
// a self-signed certificate and AUTH PLAIN.
type smtpServer struct {
	*connectortest.SMTPServer
}

func startSMTP(t testing.TB, withTLS bool, configure func(*connectortest.SMTPOptions)) *smtpServer {
	t.Helper()
	opts := connectortest.SMTPOptions{Username: smtpUser, Password: smtpPassword, TLS: withTLS}
	if configure != nil {
		configure(&opts)
	}
	return &smtpServer{connectortest.NewSMTPServer(t, opts)}
}

func (ts *smtpServer) messages() []received { return ts.Messages() }

func openSMTP(t testing.TB, ts *smtpServer, mutate func(*email.SMTPConfig)) connector.System {
	t.Helper()
	sc := &email.SMTPConfig{Host: ts.Host, Port: ts.Port, Username: smtpUser, Password: smtpPassword}
	if mutate != nil {
		mutate(sc)
	}
	cfg := &email.Config{Transport: "smtp", SMTP: sc, From: "Acme Plumbing <office@acme.example>", Timeout: 5 * time.Second}
	sys, err := emailKind(t).Open(connector.OpenParams{Name: "mail", Config: cfg})
	require.NoError(t, err)
	if ts.ClientTLS != nil {
		require.NoError(t, email.SetTLSConfig(sys, ts.ClientTLS))
	}
	return sys
}

// parsed is a received message taken apart.
type parsed struct {
	Header      mail.Header
	Subject     string
	ContentType string
	Parts       map[string]string // media type → decoded body
}

func parseMessage(t testing.TB, data []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)
	p := parsed{Header: msg.Header, Subject: subject, Parts: map[string]string{}}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	p.ContentType = mt
	if !strings.HasPrefix(mt, "multipart/") {
		// A single part: the transfer encoding is quoted-printable.
		mr := multipart.NewReader(io.MultiReader(
			strings.NewReader("--b\r\nContent-Type: "+msg.Header.Get("Content-Type")+"\r\nContent-Transfer-Encoding: "+
				msg.Header.Get("Content-Transfer-Encoding")+"\r\n\r\n"), msg.Body, strings.NewReader("\r\n--b--\r\n")), "b")
		part, err := mr.NextPart()
		require.NoError(t, err)
		body, err := io.ReadAll(part)
		require.NoError(t, err)
		p.Parts[mt] = string(body)
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		pt, _, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		require.NoError(t, err)
		body, err := io.ReadAll(part)
		require.NoError(t, err)
		p.Parts[pt] = string(body)
	}
	return p
}

func TestSMTPSend(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	sys := openSMTP(t, ts, nil)
	res, err := sendMail(t, sys, map[string]any{
		"to":       []any{"Ann Example <ann@example.com>", "bob@example.com"},
		"cc":       "Carol <carol@example.com>",
		"bcc":      "audit@acme.example",
		"reply_to": "desk@acme.example",
		"subject":  "Your quote — 15% off",
		"text":     "Hello Ann,\nyour quote is attached.",
		"html":     "<p>Hello Ann,<br>your quote is <b>attached</b>.</p>",
	})
	require.NoError(t, err)
	require.Equal(t, 250, res.Status)
	out, ok := res.Output.(map[string]any)
	require.True(t, ok)
	require.Equal(t, "sb_key1@acme.example", out["message_id"])

	msgs := ts.messages()
	require.Len(t, msgs, 1)
	got := msgs[0]
	require.True(t, got.TLS, "STARTTLS before MAIL FROM")
	require.Equal(t, smtpUser, got.AuthAs)
	require.Equal(t, "office@acme.example", got.From)
	require.ElementsMatch(t, []string{"ann@example.com", "bob@example.com", "carol@example.com", "audit@acme.example"}, got.Rcpts)

	m := parseMessage(t, got.Data)
	require.Equal(t, "<sb_key1@acme.example>", m.Header.Get("Message-Id"))
	require.Equal(t, "Your quote — 15% off", m.Subject)
	from, err := m.Header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Acme Plumbing", Address: "office@acme.example"}}, from)
	to, err := m.Header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Ann Example", Address: "ann@example.com"}, {Address: "bob@example.com"}}, to)
	cc, err := m.Header.AddressList("Cc")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Carol", Address: "carol@example.com"}}, cc)
	require.Equal(t, "<desk@acme.example>", m.Header.Get("Reply-To"))
	require.Empty(t, m.Header.Get("Bcc"), "Bcc recipients must not show")
	require.NotContains(t, string(got.Data), "audit@acme.example")
	_, err = m.Header.Date()
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", m.ContentType)
	require.Equal(t, map[string]string{
		"text/plain": "Hello Ann,\r\nyour quote is attached.",
		"text/html":  "<p>Hello Ann,<br>your quote is <b>attached</b>.</p>",
	}, trimParts(m.Parts))
}

func trimParts(parts map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range parts {
		out[k] = strings.TrimRight(v, "\r\n")
	}
	return out
}

func TestSMTPSinglePart(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	sys := openSMTP(t, ts, nil)
	for _, tt := range []struct {
		name, input, mediaType string
	}{
		{"text only", "text", "text/plain"},
		{"html only", "html", "text/html"},
	} {
		_, err := sendMail(t, sys, map[string]any{"to": "ann@example.com", "subject": tt.name, tt.input: "Hi Ann"})
		require.NoError(t, err, tt.name)
	}
	msgs := ts.messages()
	require.Len(t, msgs, 2)
	for i, want := range []string{"text/plain", "text/html"} {
		m := parseMessage(t, msgs[i].Data)
		require.Equal(t, want, m.ContentType)
		require.Equal(t, map[string]string{want: "Hi Ann"}, trimParts(m.Parts))
	}
}

func TestSMTPRetryKeepsMessageID(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	sys := openSMTP(t, ts, nil)
	act, _ := sys.Action("send")
	in := map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"}
	for range 2 {
		_, err := act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "sb_0123456789abcdef"})
		require.NoError(t, err)
	}
	_, err := act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "key with spaces"})
	require.NoError(t, err)

	msgs := ts.messages()
	require.Len(t, msgs, 3)
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = parseMessage(t, m.Data).Header.Get("Message-Id")
	}
	require.Equal(t, "<sb_0123456789abcdef@acme.example>", ids[0])
	require.Equal(t, ids[0], ids[1])
	require.Regexp(t, `^<sb-[0-9a-f]{32}@acme\.example>$`, ids[2])
}

func TestSMTPConcurrentSends(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	sys := openSMTP(t, ts, nil)
	act, _ := sys.Action("send")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := act.Do(t.Context(), connector.Request{
				Input:          map[string]any{"to": "ann@example.com", "subject": "n" + strconv.Itoa(i), "text": "t"},
				IdempotencyKey: "sb_" + strconv.Itoa(i),
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, ts.messages(), 8)
}

func TestSMTPErrors(t *testing.T) {
	t.Parallel()

	// Port 1 (tcpmux) has no listener: a port freed by a listener of our
	// own could be taken meanwhile by another test's server, which would
	// then answer (or stall) instead of refusing.
	const refusedPort = 1

	tests := []struct {
		name      string
		tls       bool
		configure func(*connectortest.SMTPOptions)
		mutate    func(*email.SMTPConfig)
		permanent bool
		wantErr   string
	}{
		{name: "550 mailbox unavailable", tls: true, permanent: true, wantErr: "550",
			configure: func(s *connectortest.SMTPOptions) {
				s.RcptErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unavailable"}
			}},
		{name: "451 try later", tls: true, wantErr: "451",
			configure: func(s *connectortest.SMTPOptions) {
				s.RcptErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
			}},
		{name: "535 authentication failed", tls: true, permanent: true, wantErr: "535",
			configure: func(s *connectortest.SMTPOptions) {
				s.AuthErr = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad password " + smtpPassword}
			}},
		{name: "454 auth temporarily unavailable", tls: true, wantErr: "454",
			configure: func(s *connectortest.SMTPOptions) {
				s.AuthErr = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
			}},
		{name: "server without STARTTLS", tls: false, wantErr: "STARTTLS"},
		{name: "530 no credentials configured", tls: true, permanent: true, wantErr: "530",
			mutate: func(c *email.SMTPConfig) { c.Username, c.Password = "", "" }},
		{name: "connection refused", tls: true, wantErr: "smtp 127.0.0.1:" + strconv.Itoa(refusedPort),
			mutate: func(c *email.SMTPConfig) { c.Port = refusedPort }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startSMTP(t, tt.tls, tt.configure)
			sys := openSMTP(t, ts, tt.mutate)
			_, err := sendMail(t, sys, map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"})
			require.Error(t, err)
			require.Equal(t, tt.permanent, connector.IsPermanent(err), "permanent? %v", err)
			_, hasAfter := connector.RetryAfterOf(err)
			require.False(t, hasAfter)
			require.ErrorContains(t, err, tt.wantErr)
			connectortest.NoSecrets(t, err, smtpPassword)
			require.Empty(t, ts.messages())
		})
	}
}

func TestSMTPInsecurePlaintext(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, false, func(s *connectortest.SMTPOptions) { s.NoAuth = true })
	sys := openSMTP(t, ts, func(c *email.SMTPConfig) { c.InsecurePlaintext = true; c.Username, c.Password = "", "" })
	_, err := sendMail(t, sys, map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"})
	require.NoError(t, err)
	msgs := ts.messages()
	require.Len(t, msgs, 1)
	require.False(t, msgs[0].TLS)
}
