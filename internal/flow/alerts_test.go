package flow_test

import (
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

// alertsHead defines one system, source and flow for the alert rules to
// name. Line 9 is the first line after it.
const alertsHead = `version: 1
systems:
  crm: {kind: http, base_url: 'http://127.0.0.1:9'}
sources:
  web_form: {webhook: {}}
flows:
  lead_capture:
    on: web_form
    steps: [{id: a, do: crm.request}]
`

func TestCompileAlerts(t *testing.T) {
	t.Parallel()

	src := alertsHead + `alerts:
  console_url: https://switchboard.example.com/
  notify:
    - slack: { webhook_url: "https://hooks.slack.com/services/T0/B0/x" }
    - webhook: { url: "https://ops.example.com/hook", headers: { Authorization: "${SMS_TOKEN}" } }
  rules:
    - dead_letter: any
    - dead_letter: { flow: lead_capture }
    - queue_depth: { above: 1000, for: 5m, flow: lead_capture }
    - oldest_pending: { above: 10m }
    - lag_p95: { above: 2m }
    - error_rate: { system: crm, above: 0.2, window: 5m, min_attempts: 20 }
    - rising_backlog: { over: 15m, min_growth: 100 }
    - silent_source: { source: web_form, for: 2h }
`
	p := mustCompile(t, "c.yaml", src)
	a := p.Alerts
	require.NotNil(t, a)
	require.Equal(t, "https://switchboard.example.com", a.ConsoleURL, "trailing slash trimmed")
	require.Equal(t, rule.DefaultEvaluateEvery, a.EvaluateEvery)
	require.Equal(t, rule.DefaultRemindEvery, a.RemindEvery)
	require.Equal(t, []rule.Target{
		{Kind: rule.Slack, URL: "https://hooks.slack.com/services/T0/B0/x"},
		{Kind: rule.Webhook, URL: "https://ops.example.com/hook", Headers: map[string]secret.Value{"Authorization": "sms-T0ken-never-printed"}},
	}, a.Targets)
	require.Equal(t, []rule.Rule{
		{Kind: rule.DeadLetter, Where: "c.yaml:16:7"},
		{Kind: rule.DeadLetter, Flow: "lead_capture", Where: "c.yaml:17:7"},
		{Kind: rule.QueueDepth, Flow: "lead_capture", Depth: 1000, For: 5 * time.Minute, Where: "c.yaml:18:7"},
		{Kind: rule.OldestPending, Age: 10 * time.Minute, Where: "c.yaml:19:7"},
		{Kind: rule.LagP95, Age: 2 * time.Minute, Window: rule.DefaultWindow, Where: "c.yaml:20:7"},
		{Kind: rule.ErrorRate, System: "crm", Rate: 0.2, Window: 5 * time.Minute, MinAttempts: 20, Where: "c.yaml:21:7"},
		{Kind: rule.RisingBacklog, Window: 15 * time.Minute, Growth: 100, Where: "c.yaml:22:7"},
		{Kind: rule.SilentSource, Source: "web_form", Age: 2 * time.Hour, Where: "c.yaml:23:7"},
	}, a.Rules)
}

func TestCompileAlertEmailTargets(t *testing.T) {
	t.Parallel()

	src := alertsHead + `alerts:
  notify:
    - email: { smtp: { host: smtp.example.com, username: alerts, password: "${CRM_TOKEN}" }, from: "Switchboard <switchboard@example.com>", to: ["ops@example.com", "On Call <oncall@example.com>"] }
    - email: { smtp: { host: smtp.example.com, port: 465, username: alerts, password: "${CRM_TOKEN}" }, from: a@example.com, to: [b@example.com] }
    - email: { smtp: { host: 127.0.0.1, port: 2525, starttls: false, insecure_plaintext: true }, from: a@example.com, to: [b@example.com] }
  rules:
    - dead_letter: any
`
	p := mustCompile(t, "c.yaml", src)
	a := p.Alerts
	require.NotNil(t, a)
	ab := []*mail.Address{{Address: "b@example.com"}}
	from := &mail.Address{Address: "a@example.com"}
	require.Equal(t, []rule.Target{
		{Kind: rule.Email, Email: &rule.EmailTarget{
			SMTP: rule.SMTP{Host: "smtp.example.com", Port: 587, Username: "alerts", Password: "crm-T0ken-never-printed", Security: rule.StartTLS},
			From: &mail.Address{Name: "Switchboard", Address: "switchboard@example.com"},
			To:   []*mail.Address{{Address: "ops@example.com"}, {Name: "On Call", Address: "oncall@example.com"}},
		}},
		{Kind: rule.Email, Email: &rule.EmailTarget{
			SMTP: rule.SMTP{Host: "smtp.example.com", Port: 465, Username: "alerts", Password: "crm-T0ken-never-printed", Security: rule.ImplicitTLS},
			From: from, To: ab,
		}},
		{Kind: rule.Email, Email: &rule.EmailTarget{
			SMTP: rule.SMTP{Host: "127.0.0.1", Port: 2525, Security: rule.Plaintext},
			From: from, To: ab,
		}},
	}, a.Targets)
	require.NotContains(t, fmt.Sprintf("%v %+v", *a.Targets[0].Email, *a.Targets[0].Email), "crm-T0ken", "a printed target redacts its password")
}

func TestCompileWithoutAlerts(t *testing.T) {
	t.Parallel()

	p := mustCompile(t, "c.yaml", alertsHead)
	require.Nil(t, p.Alerts)
}

func TestCompileAlertsNotifyWithoutRulesWarns(t *testing.T) {
	t.Parallel()

	p := mustCompile(t, "c.yaml", alertsHead+"alerts:\n  notify: [{webhook: {url: 'https://ops.example.com'}}]\n")
	require.Contains(t, p.Warnings, "c.yaml:11:3: alerts: notify is set but there are no rules; nothing will alert")
}

func TestCompileAlertErrors(t *testing.T) {
	t.Parallel()

	const notify = "alerts:\n  notify: [{webhook: {url: 'https://ops.example.com'}}]\n  rules:\n"
	// Rules start on line 13.
	tests := []struct {
		name  string
		rules string // list items under rules:
		src   string // whole alerts: section, instead of notify + rules
		want  []string
	}{
		{
			name:  "unknown rule kind",
			rules: "    - queue_size: {above: 10}\n",
			want:  []string{`c.yaml:13:7: alerts.rules[0].queue_size: unknown rule kind "queue_size" (known: dead_letter, queue_depth, oldest_pending, lag_p95, error_rate, rising_backlog, silent_source, poll_cursor, poll_failing, backstop_found)`},
		},
		{
			name:  "poll rules name a poll source of the right kind",
			rules: "    - poll_cursor: {source: web_form, for: 1h}\n    - poll_cursor: {source: jobs}\n    - poll_failing: {source: nope, failures: 0}\n    - backstop_found: {source: web_form, above: -1}\n",
			want: []string{
				`c.yaml:13:29: alerts.rules[0].poll_cursor.source: source "web_form" is not a poll source with a cursor:`,
				`c.yaml:14:29: alerts.rules[1].poll_cursor.source: unknown source "jobs" (defined: web_form)`,
				`c.yaml:14:20: alerts.rules[1].poll_cursor.for: required: how long the cursor may stand still`,
				`c.yaml:15:30: alerts.rules[2].poll_failing.source: unknown source "nope" (defined: web_form)`,
				`c.yaml:15:46: alerts.rules[2].poll_failing.failures: must be at least 1`,
				`c.yaml:16:32: alerts.rules[3].backstop_found.source: source "web_form" is not a poll source with backstop_for:`,
				`c.yaml:16:49: alerts.rules[3].backstop_found.above: must not be negative`,
			},
		},
		{
			name:  "two kinds in one item",
			rules: "    - queue_depth: {above: 10}\n      lag_p95: {above: 2m}\n",
			want:  []string{`c.yaml:14:7: alerts.rules[0]: a rule has exactly one kind key, got queue_depth, lag_p95; write each rule as its own list item`},
		},
		{
			name:  "an item that is not a mapping",
			rules: "    - dead_letter\n",
			want:  []string{`c.yaml:13:7: alerts.rules[0]: want a mapping with one rule kind as its key (dead_letter, queue_depth, oldest_pending, lag_p95, error_rate, rising_backlog, silent_source, poll_cursor, poll_failing, backstop_found)`},
		},
		{
			name:  "unknown flow",
			rules: "    - queue_depth: {above: 10, flow: lead_captur}\n",
			want:  []string{`c.yaml:13:38: alerts.rules[0].queue_depth.flow: unknown flow "lead_captur" (defined: lead_capture)`},
		},
		{
			name:  "unknown flow of a dead_letter rule",
			rules: "    - dead_letter: {flow: billing}\n",
			want:  []string{`c.yaml:13:27: alerts.rules[0].dead_letter.flow: unknown flow "billing" (defined: lead_capture)`},
		},
		{
			name:  "dead_letter takes any or a mapping",
			rules: "    - dead_letter: all\n",
			want:  []string{`c.yaml:13:20: alerts.rules[0].dead_letter: want any or {flow: NAME}, got "all"`},
		},
		{
			name:  "unknown system",
			rules: "    - error_rate: {system: hubspot, above: 0.2}\n",
			want:  []string{`c.yaml:13:28: alerts.rules[0].error_rate.system: unknown system "hubspot" (defined: crm)`},
		},
		{
			name:  "unknown source",
			rules: "    - silent_source: {source: webform, for: 2h}\n",
			want:  []string{`c.yaml:13:31: alerts.rules[0].silent_source.source: unknown source "webform" (defined: web_form)`},
		},
		{
			name: "missing thresholds",
			rules: "    - queue_depth: {for: 5m}\n    - oldest_pending: {flow: lead_capture}\n    - lag_p95: {window: 5m}\n" +
				"    - error_rate: {system: crm}\n    - rising_backlog: {over: 15m}\n    - silent_source: {source: web_form}\n    - silent_source: {for: 1h}\n",
			want: []string{
				`c.yaml:13:20: alerts.rules[0].queue_depth.above: required: the number of waiting runs above which it fires`,
				`c.yaml:14:23: alerts.rules[1].oldest_pending.above: required: the age of the oldest waiting run above which it fires`,
				`c.yaml:15:16: alerts.rules[2].lag_p95.above: required: the lag above which it fires`,
				`c.yaml:16:19: alerts.rules[3].error_rate.above: required: the share of failed attempts, 0 to 1, above which it fires`,
				`c.yaml:17:23: alerts.rules[4].rising_backlog.min_growth: required: how many more runs must wait at the end of the span`,
				`c.yaml:18:22: alerts.rules[5].silent_source.for: required: how long without an event is too long`,
				`c.yaml:19:22: alerts.rules[6].silent_source.source: required: the source expected to receive events`,
			},
		},
		{
			name:  "thresholds out of range",
			rules: "    - error_rate: {above: 20}\n    - queue_depth: {above: -1}\n    - rising_backlog: {over: 10s, min_growth: 0}\n",
			want: []string{
				`c.yaml:13:27: alerts.rules[0].error_rate.above: must be a share from 0 to 1 (0.2 is 20%)`,
				`c.yaml:14:28: alerts.rules[1].queue_depth.above: must not be negative`,
				`c.yaml:15:30: alerts.rules[2].rising_backlog.over: must be longer than alerts.evaluate_every (15s): the queue is sampled once per evaluation`,
				`c.yaml:15:47: alerts.rules[2].rising_backlog.min_growth: must be at least 1`,
			},
		},
		{
			name:  "a typo in a rule's settings",
			rules: "    - queue_depth: {abve: 10}\n",
			want:  []string{`c.yaml:13:21: alerts.rules[0].queue_depth.abve: unknown key (allowed: above, flow, for)`},
		},
		{
			name: "notify is required when there are rules",
			src:  "alerts:\n  rules: [{dead_letter: any}]\n",
			want: []string{`c.yaml:11:3: alerts.notify: required when there are rules: at least one slack:, webhook: or email: target`},
		},
		{
			name: "bad URLs are reported without quoting them",
			src: "alerts:\n  console_url: switchboard.example.com\n  notify:\n    - slack: {webhook_url: 'hooks.slack.com/services/${CRM_TOKEN}'}\n" +
				"    - webhook: {url: 'ftp://ops.example.com/${SMS_TOKEN}'}\n    - webhook: {headers: {X-Token: '${SMS_TOKEN}'}}\n",
			want: []string{
				`c.yaml:11:16: alerts.console_url: must be an absolute http or https URL without query or fragment, such as https://switchboard.example.com`,
				`c.yaml:13:28: alerts.notify[0].slack.webhook_url: must be an absolute http or https URL`,
				`c.yaml:14:22: alerts.notify[1].webhook.url: must be an absolute http or https URL`,
				`c.yaml:15:16: alerts.notify[2].webhook.url: required`,
			},
		},
		{
			name: "a target has one kind",
			src: "alerts:\n  notify:\n    - slack: {webhook_url: 'https://hooks.slack.com/x'}\n      webhook: {url: 'https://ops.example.com'}\n    - {}\n" +
				"    - webhook: {url: 'https://ops.example.com'}\n      email: {smtp: {host: h}, from: a@example.com, to: [b@example.com]}\n    - email:\n",
			want: []string{
				`c.yaml:12:7: alerts.notify[0]: a target has exactly one of slack:, webhook: or email:; write each as its own list item`,
				`c.yaml:14:7: alerts.notify[1]: want slack: {webhook_url: …}, webhook: {url: …} or email: {smtp: …, from: …, to: […]}`,
				`c.yaml:15:7: alerts.notify[2]: a target has exactly one of slack:, webhook: or email:; write each as its own list item`,
				`c.yaml:17:7: alerts.notify[3]: want slack: {webhook_url: …}, webhook: {url: …} or email: {smtp: …, from: …, to: […]}`,
			},
		},
		{
			name: "an email target's required settings",
			src:  "alerts:\n  notify:\n    - email: {}\n    - email: {smtp: {port: 587}, to: []}\n",
			want: []string{
				`c.yaml:12:14: alerts.notify[0].email.smtp: required: the SMTP server, {host: …}`,
				`c.yaml:12:14: alerts.notify[0].email.from: required: the sender's address`,
				`c.yaml:12:14: alerts.notify[0].email.to: required: at least one recipient's address`,
				`c.yaml:13:21: alerts.notify[1].email.smtp.host: required: the server's host name`,
				`c.yaml:13:14: alerts.notify[1].email.from: required: the sender's address`,
				`c.yaml:13:38: alerts.notify[1].email.to: required: at least one recipient's address`,
			},
		},
		{
			name: "bad email settings are reported without quoting the password",
			src: "alerts:\n  notify:\n    - email:\n        smtp: {host: 'smtp.example.com:587', port: 70000, password: '${CRM_TOKEN}', starttls: false}\n" +
				"        from: switchboard\n        to: [ops@example.com, 'ops', 'a@example.com, b@example.com']\n",
			want: []string{
				`c.yaml:13:22: alerts.notify[0].email.smtp.host: want a host name or IP address, without port or scheme`,
				`c.yaml:13:52: alerts.notify[0].email.smtp.port: want 1 to 65535`,
				`c.yaml:13:15: alerts.notify[0].email.smtp.username: required with password`,
				`c.yaml:13:95: alerts.notify[0].email.smtp.starttls: may be false only with port 465 (implicit TLS) or insecure_plaintext: true`,
				`c.yaml:14:15: alerts.notify[0].email.from: "switchboard" is not an e-mail address`,
				`c.yaml:15:31: alerts.notify[0].email.to[1]: "ops" is not an e-mail address (write one address per item)`,
				`c.yaml:15:38: alerts.notify[0].email.to[2]: "a@example.com, b@example.com" is not an e-mail address (write one address per item)`,
			},
		},
		{
			name: "conflicting SMTP security settings",
			src: "alerts:\n  notify:\n" +
				"    - email: {smtp: {host: h, port: 465, insecure_plaintext: true}, from: a@example.com, to: [b@example.com]}\n" +
				"    - email: {smtp: {host: h, port: 465, starttls: true}, from: a@example.com, to: [b@example.com]}\n" +
				"    - email: {smtp: {host: h, starttls: true, insecure_plaintext: true}, from: a@example.com, to: [b@example.com]}\n" +
				"    - email: {smtp: {host: h, username: u}, from: a@example.com, to: [b@example.com]}\n",
			want: []string{
				`c.yaml:12:62: alerts.notify[0].email.smtp.insecure_plaintext: port 465 is implicit TLS`,
				`c.yaml:13:52: alerts.notify[1].email.smtp.starttls: port 465 uses implicit TLS, not STARTTLS; leave starttls unset`,
				`c.yaml:14:41: alerts.notify[2].email.smtp.starttls: conflicts with insecure_plaintext`,
				`c.yaml:15:21: alerts.notify[3].email.smtp.password: required with username`,
			},
		},
		{
			name: "bad header name",
			src:  "alerts:\n  notify:\n    - webhook: {url: 'https://ops.example.com', headers: {'X Token': '${SMS_TOKEN}'}}\n",
			want: []string{`c.yaml:12:58: alerts.notify[0].webhook.headers.X Token: "X Token" is not a valid header name`},
		},
		{
			name: "bad periods",
			src:  "alerts:\n  evaluate_every: 10ms\n  remind_every: -1h\n",
			want: []string{
				`c.yaml:11:19: alerts.evaluate_every: must be at least 1s`,
				`c.yaml:12:17: alerts.remind_every: must be positive`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := alertsHead + notify + tt.rules
			if tt.src != "" {
				src = alertsHead + tt.src
			}
			p, err := compile(t, "c.yaml", src)
			require.Error(t, err)
			require.Nil(t, p)
			var got []string
			for _, e := range unjoin(err) {
				got = append(got, e.Error())
				for name, v := range testEnv {
					if strings.Contains(name, "TOKEN") {
						require.NotContains(t, e.Error(), v)
					}
				}
			}
			require.Equal(t, tt.want, got)
		})
	}
}
