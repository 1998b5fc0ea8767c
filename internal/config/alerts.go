package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/secret"
)

// Alerts is the alerts: section: rules over queues, lag, error rates and
// sources, and where their notifications go.
type Alerts struct {
	// ConsoleURL is the base URL of the web console, e.g.
	// https://switchboard.example.com. Optional; when set, notifications
	// link to {console_url}/console/runs/{run_id} or {console_url}/console.
	ConsoleURL string `yaml:"console_url"`
	// EvaluateEvery is how often the threshold rules are evaluated.
	// Defaults to 15s. Dead letters are not waited for: they alert at once.
	EvaluateEvery time.Duration `yaml:"evaluate_every"`
	// RemindEvery is how often a firing alert is sent again while it holds.
	// Defaults to 1h.
	RemindEvery time.Duration `yaml:"remind_every"`
	// Notify lists where notifications go; each item has exactly one of
	// slack:, webhook: or email:. Required when there are rules.
	Notify []Notify `yaml:"notify"`
	// Rules are the alert rules. Each item is a mapping with one key, the
	// rule kind (dead_letter, queue_depth, …), whose value is decoded into
	// that kind's struct below when the config is compiled.
	Rules []*yaml.Node `yaml:"rules"`
}

// Notify is one notification target.
type Notify struct {
	// Slack posts to a Slack incoming webhook.
	Slack *SlackNotify `yaml:"slack"`
	// Webhook posts a JSON document to any URL.
	Webhook *WebhookNotify `yaml:"webhook"`
	// Email sends a plain-text e-mail through an SMTP server.
	Email *EmailNotify `yaml:"email"`
}

// SlackNotify is a Slack incoming webhook.
type SlackNotify struct {
	// WebhookURL is the incoming webhook's URL (https://hooks.slack.com/…).
	// It is a credential: write it as ${NAME}.
	WebhookURL secret.Value `yaml:"webhook_url"`
}

// WebhookNotify posts each notification as JSON to a URL.
type WebhookNotify struct {
	// URL is the absolute http or https URL to POST to. Never printed.
	URL secret.Value `yaml:"url"`
	// Headers are sent with every request; their values are never printed.
	Headers map[string]secret.Value `yaml:"headers"`
}

// EmailNotify sends each notification as a plain-text e-mail.
type EmailNotify struct {
	// SMTP is the server that relays the mail. Required.
	SMTP *SMTPServer `yaml:"smtp"`
	// From is the sender, e.g. "Switchboard <switchboard@example.com>".
	// Required.
	From string `yaml:"from"`
	// To are the recipients, one address per item. Required.
	To []string `yaml:"to"`
}

// SMTPServer is an SMTP submission server. Its keys and rules are those of
// the email connector's smtp: block.
type SMTPServer struct {
	// Host is the server's host name or IP address, without port or
	// scheme. Required. TLS certificates are checked against it.
	Host string `yaml:"host"`
	// Port defaults to 587 (submission with STARTTLS). 465 means implicit
	// TLS: the connection is TLS from the first byte.
	Port int `yaml:"port"`
	// Username and Password authenticate with SMTP AUTH. Both or neither.
	Username string `yaml:"username"`
	// Password is a credential: write it as ${NAME}. Never printed.
	Password secret.Value `yaml:"password"`
	// StartTLS requires STARTTLS before anything else is sent. Defaults to
	// true. It may be false only with port 465 or insecure_plaintext.
	StartTLS *bool `yaml:"starttls"`
	// InsecurePlaintext talks to the server without any TLS (and sends
	// AUTH PLAIN in clear text). For tests and local relays only.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
}

// DeadLetterRule alerts the moment a run dies. In the config it is either
// the word any (every flow) or a mapping.
type DeadLetterRule struct {
	// Flow limits the rule to one flow.
	Flow string `yaml:"flow"`
}

// QueueDepthRule alerts when a flow's waiting runs stay above a number.
type QueueDepthRule struct {
	// Above is the threshold: the rule fires when more runs wait. Required.
	Above *int `yaml:"above"`
	// For is how long the depth must stay above before the rule fires.
	// Defaults to 0 (at the first evaluation above).
	For time.Duration `yaml:"for"`
	// Flow limits the rule to one flow; by default each flow is checked.
	Flow string `yaml:"flow"`
}

// OldestPendingRule alerts when a flow's oldest waiting run is too old.
type OldestPendingRule struct {
	// Above is the age threshold. Required.
	Above *time.Duration `yaml:"above"`
	// Flow limits the rule to one flow; by default each flow is checked.
	Flow string `yaml:"flow"`
}

// LagP95Rule alerts when the 95th percentile of the time from an event's
// receipt to its run's end is too long.
type LagP95Rule struct {
	// Above is the lag threshold. Required.
	Above *time.Duration `yaml:"above"`
	// Window is the span of finished runs considered. Defaults to 10m.
	Window time.Duration `yaml:"window"`
	// Flow limits the rule to one flow; by default each flow is checked.
	Flow string `yaml:"flow"`
}

// ErrorRateRule alerts when too many attempts against a system fail.
type ErrorRateRule struct {
	// System limits the rule to one system; by default each is checked.
	System string `yaml:"system"`
	// Above is the share of attempts that did not succeed, 0 to 1
	// (0.2 is 20%). Required.
	Above *float64 `yaml:"above"`
	// Window is the span of attempts considered. Defaults to 10m.
	Window time.Duration `yaml:"window"`
	// MinAttempts is how many attempts the window needs before the rate
	// counts. Defaults to 10.
	MinAttempts int `yaml:"min_attempts"`
}

// RisingBacklogRule alerts when a flow's queue keeps growing.
type RisingBacklogRule struct {
	// Over is the span compared. Required.
	Over *time.Duration `yaml:"over"`
	// MinGrowth is how many more runs must wait at the end of the span than
	// at its start. Required.
	MinGrowth *int `yaml:"min_growth"`
	// Flow limits the rule to one flow; by default each flow is checked.
	Flow string `yaml:"flow"`
}

// PollCursorRule alerts when a poll source's cursor stops advancing.
type PollCursorRule struct {
	// Source is the poll source. Required.
	Source string `yaml:"source"`
	// For is how long without a move is too long. Required.
	For *time.Duration `yaml:"for"`
}

// PollFailingRule alerts when a timed source keeps failing.
type PollFailingRule struct {
	// Source limits the rule to one timed source; by default each is
	// checked.
	Source string `yaml:"source"`
	// Failures is how many runs in a row must fail. Default 3.
	Failures *int `yaml:"failures"`
}

// BackstopFoundRule alerts when a backstop poll finds records its webhook
// source never delivered.
type BackstopFoundRule struct {
	// Source is the backstop poll source. Required.
	Source string `yaml:"source"`
	// Above is how many records its last run may find before it fires.
	// Default 0: any.
	Above *int `yaml:"above"`
}

// SilentSourceRule alerts when a source stops receiving events.
type SilentSourceRule struct {
	// Source is the source's name. Required.
	Source string `yaml:"source"`
	// For is how long without an event is too long. Required.
	For *time.Duration `yaml:"for"`
}
