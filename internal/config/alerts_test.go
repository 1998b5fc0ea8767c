package config_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

func TestParseAlerts(t *testing.T) {
	t.Parallel()

	src := `version: 1
alerts:
  console_url: https://switchboard.example.com
  evaluate_every: 30s
  remind_every: 2h
  notify:
    - slack: { webhook_url: "${URL}/services/x" }
    - webhook: { url: "https://ops.example.com/hook", headers: { Authorization: "${TOKEN}" } }
    - email: { smtp: { host: smtp.example.com, port: 587, username: alerts, password: "${TOKEN}" }, from: "switchboard@example.com", to: ["ops@example.com"] }
  rules:
    - dead_letter: any
    - queue_depth: { above: 1000, for: 5m }
`
	c, err := config.Parse("c.yaml", []byte(src), getenv)
	require.NoError(t, err)
	a := c.Alerts
	require.NotNil(t, a)
	require.Equal(t, "https://switchboard.example.com", a.ConsoleURL)
	require.Equal(t, 30*time.Second, a.EvaluateEvery)
	require.Equal(t, 2*time.Hour, a.RemindEvery)
	require.Len(t, a.Notify, 3)
	require.Equal(t, secret.Value("http://127.0.0.1:9001/services/x"), a.Notify[0].Slack.WebhookURL)
	require.Equal(t, tokenValue, a.Notify[1].Webhook.Headers["Authorization"].Reveal())
	require.Equal(t, "[redacted]", a.Notify[1].Webhook.Headers["Authorization"].String())
	require.Equal(t, &config.EmailNotify{
		SMTP: &config.SMTPServer{Host: "smtp.example.com", Port: 587, Username: "alerts", Password: tokenValue},
		From: "switchboard@example.com",
		To:   []string{"ops@example.com"},
	}, a.Notify[2].Email)
	require.NotContains(t, fmt.Sprintf("%v %+v", *a.Notify[2].Email.SMTP, *a.Notify[2].Email.SMTP), tokenValue)
	// Rules are kept as nodes, with their positions, for the compiler.
	require.Len(t, a.Rules, 2)
	require.Equal(t, 11, a.Rules[0].Line)
	require.Equal(t, 12, a.Rules[1].Line)
}

func TestParseAlertsErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown key in alerts",
			src:  "version: 1\nalerts:\n  remind: 1h\n",
			want: []string{`c.yaml:3:3: alerts.remind: unknown key (allowed: console_url, evaluate_every, notify, remind_every, rules)`},
		},
		{
			name: "unknown notifier key",
			src:  "version: 1\nalerts:\n  notify:\n    - slack: {url: 'https://hooks.slack.com/x'}\n",
			want: []string{`c.yaml:4:15: alerts.notify[0].slack.url: unknown key (allowed: webhook_url)`},
		},
		{
			name: "unknown notifier kind",
			src:  "version: 1\nalerts:\n  notify:\n    - pagerduty: {key: abc}\n",
			want: []string{`c.yaml:4:7: alerts.notify[0].pagerduty: unknown key (allowed: email, slack, webhook)`},
		},
		{
			name: "unknown email key",
			src:  "version: 1\nalerts:\n  notify:\n    - email: {smtp: {host: smtp.example.com, tls: true}, from: a@example.com, to: [b@example.com], cc: [c@example.com]}\n",
			want: []string{
				`c.yaml:4:46: alerts.notify[0].email.smtp.tls: unknown key (allowed: host, insecure_plaintext, password, port, starttls, username)`,
				`c.yaml:4:100: alerts.notify[0].email.cc: unknown key (allowed: from, smtp, to)`,
			},
		},
		{
			name: "email fields of the wrong type",
			src:  "version: 1\nalerts:\n  notify:\n    - email: {smtp: {host: h, port: smtp, starttls: maybe}, to: ops@example.com}\n",
			want: []string{
				`c.yaml:4:37: alerts.notify[0].email.smtp.port: want an integer, got "smtp"`,
				`c.yaml:4:53: alerts.notify[0].email.smtp.starttls: want true or false, got "maybe"`,
				`c.yaml:4:65: alerts.notify[0].email.to: want a list, got "ops@example.com"`,
			},
		},
		{
			name: "an unset variable in an SMTP password",
			src:  "version: 1\nalerts:\n  notify:\n    - email: {smtp: {host: h, username: u, password: '${SMTP_PASSWORD}'}}\n",
			want: []string{`c.yaml:4:54: alerts.notify[0].email.smtp.password: environment variable SMTP_PASSWORD is not set`},
		},
		{
			name: "rules must be a list",
			src:  "version: 1\nalerts:\n  rules:\n    dead_letter: any\n",
			want: []string{`c.yaml:4:5: alerts.rules: want a list, got a mapping`},
		},
		{
			name: "an unset variable in a webhook header",
			src:  "version: 1\nalerts:\n  notify:\n    - webhook: {url: 'https://x.example', headers: {Authorization: '${OPS_TOKEN}'}}\n",
			want: []string{`c.yaml:4:68: alerts.notify[0].webhook.headers.Authorization: environment variable OPS_TOKEN is not set`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, parseErrors(t, tt.src))
		})
	}
}
