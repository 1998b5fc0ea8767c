package alert

import (
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/secret"
	"github.com/switchboard-dev/switchboard/internal/store"
)

const (
	smtpUser     = "alerts"
	smtpPassword = "smtpS3cretPassw0rd"
)

// mailReceived is one message the test SMTP server accepted.
type mailReceived = connectortest.SMTPMessage

// smtpServer is connectortest's in-process SMTP server, accepting AUTH PLAIN
// as smtpUser, with STARTTLS under a self-signed certificate or, without
// TLS, AUTH in clear text.
type smtpServer struct {
	*connectortest.SMTPServer
	// arrived gets every accepted message.
	arrived chan mailReceived
}

func startSMTP(tb testing.TB, withTLS bool, configure func(*connectortest.SMTPOptions)) *smtpServer {
	tb.Helper()
	opts := connectortest.SMTPOptions{Username: smtpUser, Password: smtpPassword, TLS: withTLS, InsecureAuth: !withTLS}
	if configure != nil {
		configure(&opts)
	}
	srv := connectortest.NewSMTPServer(tb, opts)
	return &smtpServer{SMTPServer: srv, arrived: srv.Arrived}
}

// take returns the messages accepted since the last take.
func (ts *smtpServer) take() []mailReceived { return ts.Take() }

func (ts *smtpServer) tryCount() int { return ts.Tries() }

// target is an email target for ts, changed by mutate.
func (ts *smtpServer) target(mutate func(*rule.EmailTarget)) rule.Target {
	e := &rule.EmailTarget{
		SMTP: rule.SMTP{
			Host: ts.Host, Port: ts.Port, Username: smtpUser, Password: smtpPassword, Security: rule.StartTLS,
		},
		From: &mail.Address{Name: "Switchboard", Address: "switchboard@example.com"},
		To:   []*mail.Address{{Address: "ops@example.com"}, {Name: "On Call", Address: "oncall@example.com"}},
	}
	if ts.ClientTLS == nil {
		e.SMTP.Security = rule.Plaintext
	}
	if mutate != nil {
		mutate(e)
	}
	return rule.Target{Kind: rule.Email, Email: e}
}

// trust makes the Manager's email senders trust ts's certificate. Call it
// before Deliver starts.
func (ts *smtpServer) trust(tb testing.TB, m *Manager) {
	tb.Helper()
	if ts.ClientTLS == nil {
		return
	}
	for _, s := range m.senders {
		if s.mail != nil {
			require.NoError(tb, s.mail.client.SetTLSConfig(ts.ClientTLS))
		}
	}
}

// parsedMail is a received plain-text message taken apart.
type parsedMail struct {
	Header  mail.Header
	Subject string
	// Body is decoded, with \n line ends.
	Body string
}

func parseMail(tb testing.TB, data []byte) parsedMail {
	tb.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	require.NoError(tb, err)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(tb, err)
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(tb, err)
	require.Equal(tb, "text/plain", mt)
	require.Equal(tb, "UTF-8", strings.ToUpper(params["charset"]))
	body := msg.Body
	if msg.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		body = quotedprintable.NewReader(body)
	}
	text, err := io.ReadAll(body)
	require.NoError(tb, err)
	return parsedMail{Header: msg.Header, Subject: subject, Body: strings.ReplaceAll(string(text), "\r\n", "\n")}
}

func TestEmailFiringAndResolved(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	b := setup(t, bundleOpts{
		rules:   []rule.Rule{{Kind: rule.QueueDepth, Flow: "lead_capture", Depth: 1000}},
		targets: []rule.Target{ts.target(nil)},
	})
	ts.trust(t, b.m)

	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Waiting: 1532})
	b.evaluate(t)
	msgs := ts.take()
	require.Len(t, msgs, 1)
	got := msgs[0]
	require.True(t, got.TLS, "STARTTLS before MAIL FROM")
	require.Equal(t, smtpUser, got.AuthAs)
	require.Equal(t, "switchboard@example.com", got.From)
	require.Equal(t, []string{"ops@example.com", "oncall@example.com"}, got.Rcpts)
	m := parseMail(t, got.Data)
	require.Equal(t, "[FIRING] queue depth of flow lead_capture is 1,532 (above 1,000)", m.Subject)
	from, err := m.Header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Switchboard", Address: "switchboard@example.com"}}, from)
	to, err := m.Header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Address: "ops@example.com"}, {Name: "On Call", Address: "oncall@example.com"}}, to)
	date, err := m.Header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(t0), "Date is when the alert fired: %s", date)
	require.NotEmpty(t, m.Header.Get("Message-Id"))
	require.Equal(t, `FIRING queue_depth · lead_capture

queue depth of flow lead_capture is 1,532 (above 1,000)

Rule:    queue_depth
Subject: lead_capture
Started: 2025-03-04 09:00:00 UTC

Details:
  above:       1000
  flow:        lead_capture
  for_seconds: 0
  waiting:     1532

Open in console: https://switchboard.example.com/console
`, m.Body)

	// Still above: nothing until remind_every.
	b.clock.Advance(30 * time.Minute)
	b.evaluate(t)
	require.Empty(t, ts.take())

	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Waiting: 12})
	b.clock.Advance(15 * time.Second)
	b.evaluate(t)
	msgs = ts.take()
	require.Len(t, msgs, 1)
	m = parseMail(t, msgs[0].Data)
	require.Equal(t, "[RESOLVED] queue depth of flow lead_capture is 12 (limit 1,000)", m.Subject)
	require.Contains(t, m.Body, "RESOLVED queue_depth · lead_capture\n\nqueue depth of flow lead_capture is 12 (limit 1,000)\n")
	require.Contains(t, m.Body, "Started:  2025-03-04 09:00:00 UTC\nResolved: 2025-03-04 09:30:15 UTC, after 30m15s\n")
	require.Contains(t, m.Body, "  waiting:     12\n")

	b.clock.Advance(time.Hour)
	b.evaluate(t)
	require.Empty(t, ts.take(), "resolved once")
}

func TestEmailDeadLetterArrivesWithinFiveSeconds(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, true, nil)
	b := setup(t, bundleOpts{
		rules:   []rule.Rule{{Kind: rule.DeadLetter}, {Kind: rule.QueueDepth, Depth: 1000}},
		targets: []rule.Target{ts.target(nil)},
		now:     time.Now,
	})
	ts.trust(t, b.m)
	b.deliver(t, true)

	start := time.Now()
	d := deadRun("lead_capture", "run_1")
	d.Error = "HTTP 422: email is invalid <run_1>\nBcc: attacker@example.com"
	b.m.RunDead(t.Context(), d)
	var got mailReceived
	select {
	case got = <-ts.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no dead-letter e-mail within 5s")
	}
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, []string{"ops@example.com", "oncall@example.com"}, got.Rcpts, "the error adds no recipient")
	m := parseMail(t, got.Data)
	require.Equal(t, "[FIRING] run run_1 of flow lead_capture is dead after 8 attempts at step contact (system crm): "+
		"HTTP 422: email is invalid <run_1> Bcc: attacker@example.com", m.Subject)
	require.Empty(t, m.Header.Get("Bcc"))
	for _, want := range []string{
		"Run:      run_1\nEvent:    ev_run_1\nSource:   web_form\nStep:     contact\nSystem:   crm\nAttempts: 8\n",
		"  run_id:   run_1\n",
		"\nLast error:\n  HTTP 422: email is invalid <run_1>\n  Bcc: attacker@example.com\n",
		"\nOpen in console: https://switchboard.example.com/console/runs/run_1\n",
	} {
		require.Contains(t, m.Body, want)
	}
}

func TestEmailSendFailures(t *testing.T) {
	t.Parallel()

	refused, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refusedPort := refused.Addr().(*net.TCPAddr).Port
	require.NoError(t, refused.Close())

	tests := []struct {
		name      string
		configure func(*connectortest.SMTPOptions)
		mutate    func(*rule.EmailTarget)
		tries     int // commands the server saw
		delivered bool
		logs      []string
	}{
		{
			name: "4xx is retried",
			configure: func(s *connectortest.SMTPOptions) {
				greylist := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
				s.MailErrs = []*smtp.SMTPError{greylist, greylist}
			},
			tries: 3, delivered: true,
			logs: []string{`"msg":"alert notification failed, retrying"`, `"status":451`, "Greylisted"},
		},
		{
			name: "5xx is not retried",
			configure: func(s *connectortest.SMTPOptions) {
				s.MailErrs = []*smtp.SMTPError{{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 0}, Message: "Sender rejected"}}
			},
			tries: 1,
			logs:  []string{`"msg":"alert notification failed"`, `"status":550`, `"notifier":"email"`, "Sender rejected"},
		},
		{
			name: "failed authentication is not retried and the password not logged",
			configure: func(s *connectortest.SMTPOptions) {
				s.AuthErr = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad password " + smtpPassword}
			},
			tries: 1,
			logs:  []string{`"msg":"alert notification failed"`, `"status":535`, "bad password [redacted]"},
		},
		{
			name:   "a connection error is retried",
			mutate: func(e *rule.EmailTarget) { e.SMTP.Port = refusedPort },
			logs: []string{
				`"msg":"alert notification failed, retrying"`, `"msg":"alert notification failed"`,
				`"status":0`, `"try":3`, "smtp 127.0.0.1:" + strconv.Itoa(refusedPort),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startSMTP(t, true, tt.configure)
			b := setup(t, bundleOpts{
				rules:    []rule.Rule{{Kind: rule.DeadLetter}},
				targets:  []rule.Target{ts.target(tt.mutate)},
				maxTries: 3,
			})
			ts.trust(t, b.m)
			b.m.RunDead(t.Context(), deadRun("f", "run_1"))
			b.flush(t)
			require.Equal(t, tt.tries, ts.tryCount())
			require.Len(t, ts.take(), map[bool]int{true: 1}[tt.delivered])
			logs := b.logs.String()
			for _, want := range tt.logs {
				require.Contains(t, logs, want)
			}
			require.NotContains(t, logs, smtpPassword)
			require.NotContains(t, logs, "S3cret")
		})
	}
}

func TestEmailPlaintext(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		noAuth bool
		mutate func(*rule.EmailTarget)
		authAs string
	}{
		{name: "with AUTH PLAIN", authAs: smtpUser},
		{name: "without authentication", noAuth: true, mutate: func(e *rule.EmailTarget) { e.SMTP.Username, e.SMTP.Password = "", "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startSMTP(t, false, func(s *connectortest.SMTPOptions) { s.NoAuth = tt.noAuth })
			b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter}}, targets: []rule.Target{ts.target(tt.mutate)}})
			b.m.RunDead(t.Context(), deadRun("f", "run_1"))
			b.flush(t)
			msgs := ts.take()
			require.Len(t, msgs, 1)
			require.False(t, msgs[0].TLS)
			require.Equal(t, tt.authAs, msgs[0].AuthAs)
		})
	}
}

func TestEmailStartTLSIsMandatory(t *testing.T) {
	t.Parallel()

	ts := startSMTP(t, false, nil)
	b := setup(t, bundleOpts{
		rules:    []rule.Rule{{Kind: rule.DeadLetter}},
		targets:  []rule.Target{ts.target(func(e *rule.EmailTarget) { e.SMTP.Security = rule.StartTLS })},
		maxTries: 1,
	})
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	b.flush(t)
	require.Empty(t, ts.take())
	require.Zero(t, ts.tryCount(), "nothing is sent without STARTTLS")
	require.Contains(t, b.logs.String(), "STARTTLS")
}

func TestEmailSubject(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		n    notification
		want string
	}{
		{name: "firing", n: notification{state: firing, summary: "queue depth is 5"}, want: "[FIRING] queue depth is 5"},
		{name: "reminder", n: notification{state: firing, reminder: true, summary: "still 5"}, want: "[STILL FIRING] still 5"},
		{name: "resolved", n: notification{state: resolved, summary: "back to 0"}, want: "[RESOLVED] back to 0"},
		{name: "one line", n: notification{state: firing, summary: "a\r\nBcc: x\tb\x00c"}, want: "[FIRING] a Bcc: x b c"},
		{name: "bounded", n: notification{state: firing, summary: strings.Repeat("é", 150)}, want: "[FIRING] " + strings.Repeat("é", 100) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, emailSubject(tt.n))
		})
	}
}

func TestNewRejectsAnEmailTargetWithoutSettings(t *testing.T) {
	t.Parallel()

	_, err := New(Config{Alerts: &rule.Set{Targets: []rule.Target{{Kind: rule.Email, URL: secret.Value("x")}}}})
	require.ErrorContains(t, err, "notify[0]")
}
