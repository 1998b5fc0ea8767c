package config_test

import (
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
	require.Len(t, a.Notify, 2)
	require.Equal(t, secret.Value("http://127.0.0.1:9001/services/x"), a.Notify[0].Slack.WebhookURL)
	require.Equal(t, tokenValue, a.Notify[1].Webhook.Headers["Authorization"].Reveal())
	require.Equal(t, "[redacted]", a.Notify[1].Webhook.Headers["Authorization"].String())
	// Rules are kept as nodes, with their positions, for the compiler.
	require.Len(t, a.Rules, 2)
	require.Equal(t, 10, a.Rules[0].Line)
	require.Equal(t, 11, a.Rules[1].Line)
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
			src:  "version: 1\nalerts:\n  notify:\n    - email: {to: ops@example.com}\n",
			want: []string{`c.yaml:4:7: alerts.notify[0].email: unknown key (allowed: slack, webhook)`},
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
