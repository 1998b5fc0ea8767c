// Package rule is the compiled form of a config's alerts: section: which
// conditions alert, when, and where the notifications go. flow.Compile
// builds a Set and the alert package evaluates it; it is its own leaf so
// that flow need not depend on the store the evaluator reads.
package rule

import (
	"net/mail"
	"time"

	"github.com/switchboard-dev/switchboard/internal/secret"
)

// Defaults applied where the alerts: section is silent.
const (
	// DefaultEvaluateEvery is how often threshold rules are evaluated.
	DefaultEvaluateEvery = 15 * time.Second
	// DefaultRemindEvery is how often a firing alert is re-sent.
	DefaultRemindEvery = time.Hour
	// DefaultWindow is the window of lag_p95 and error_rate.
	DefaultWindow = 10 * time.Minute
	// DefaultMinAttempts is error_rate's min_attempts.
	DefaultMinAttempts = 10
)

// Set is a compiled alerts: section. It is read-only once built.
type Set struct {
	// ConsoleURL is the console's base URL without a trailing slash, or ""
	// when notifications carry no links.
	ConsoleURL string
	// EvaluateEvery is the period of the threshold rules' evaluation.
	EvaluateEvery time.Duration
	// RemindEvery is how often a firing alert is sent again.
	RemindEvery time.Duration
	// Targets receive every notification, in order.
	Targets []Target
	// Rules are the alert rules, in config order.
	Rules []Rule
}

// TargetKind is the kind of a notification target.
type TargetKind string

// Target kinds.
const (
	// Slack posts to a Slack incoming webhook.
	Slack TargetKind = "slack"
	// Webhook posts a JSON document to any URL.
	Webhook TargetKind = "webhook"
	// Email sends a plain-text e-mail through an SMTP server.
	Email TargetKind = "email"
)

// Target is where notifications go.
type Target struct {
	Kind TargetKind
	// URL is the endpoint (slack and webhook); it is a secret because
	// incoming-webhook URLs carry their credential in the path.
	URL secret.Value
	// Headers are sent with every request (webhook only).
	Headers map[string]secret.Value
	// Email is the server and addresses of an email target; nil for the
	// other kinds.
	Email *EmailTarget
}

// EmailTarget is an email target: who sends to whom, through which server.
type EmailTarget struct {
	SMTP SMTP
	// From is the sender.
	From *mail.Address
	// To are the recipients, at least one.
	To []*mail.Address
}

// SMTP is an SMTP submission server.
type SMTP struct {
	// Host is the server's host name or IP address; TLS certificates are
	// checked against it.
	Host string
	// Port is the server's port (the config defaults it to 587).
	Port int
	// Username and Password authenticate with SMTP AUTH; both are empty
	// when the server needs no authentication.
	Username string
	Password secret.Value
	// Security is how the connection is protected.
	Security SMTPSecurity
}

// SMTPSecurity is how an SMTP connection is protected.
type SMTPSecurity string

// SMTP security modes.
const (
	// StartTLS upgrades the connection with STARTTLS before anything else
	// is sent, and fails if the server does not offer it.
	StartTLS SMTPSecurity = "starttls"
	// ImplicitTLS is TLS from the first byte (port 465).
	ImplicitTLS SMTPSecurity = "implicit_tls"
	// Plaintext uses no TLS at all, so mail and password cross the
	// network in clear text: for tests and local relays only.
	Plaintext SMTPSecurity = "plaintext"
)

// Kind is a rule kind, spelled as in the config.
type Kind string

// Rule kinds.
const (
	// DeadLetter fires the moment a run of the flow dies.
	DeadLetter Kind = "dead_letter"
	// QueueDepth fires when a flow's waiting runs exceed Depth for For.
	QueueDepth Kind = "queue_depth"
	// OldestPending fires when a flow's oldest waiting run is older than Age.
	OldestPending Kind = "oldest_pending"
	// LagP95 fires when the 95th percentile of a flow's ingest-to-done lag
	// over Window exceeds Age.
	LagP95 Kind = "lag_p95"
	// ErrorRate fires when more than Rate of a system's attempts over
	// Window did not succeed, given at least MinAttempts attempts.
	ErrorRate Kind = "error_rate"
	// RisingBacklog fires when a flow's queue grew by at least Growth over
	// Window without draining in between.
	RisingBacklog Kind = "rising_backlog"
	// SilentSource fires when a source received no event for Age.
	SilentSource Kind = "silent_source"
	// PollCursor fires when a poll source's cursor has not advanced for Age.
	PollCursor Kind = "poll_cursor"
	// PollFailing fires when Count runs in a row of a timed source failed.
	PollFailing Kind = "poll_failing"
	// BackstopFound fires when the last run of a backstop poll found more
	// than Count records its webhook source had not delivered.
	BackstopFound Kind = "backstop_found"
)

// Kinds lists every rule kind, in the order the docs present them.
var Kinds = []Kind{DeadLetter, QueueDepth, OldestPending, LagP95, ErrorRate, RisingBacklog, SilentSource, PollCursor, PollFailing, BackstopFound}

// DefaultPollFailures is poll_failing's default failures.
const DefaultPollFailures = 3

// Rule is one alert rule. Which fields apply depends on Kind; the others
// are zero.
type Rule struct {
	Kind Kind
	// Flow limits a flow rule to one flow; "" means each flow on its own.
	Flow string
	// System limits error_rate to one system; "" means each system on its own.
	System string
	// Source is the source of silent_source and the poll rules; "" in
	// poll_failing means each timed source on its own.
	Source string
	// Count is poll_failing's failures and backstop_found's above.
	Count int

	// Depth is queue_depth's threshold: it fires above it.
	Depth int
	// For is how long queue_depth must stay above Depth before it fires.
	For time.Duration
	// Age is the threshold of oldest_pending and lag_p95 (they fire above
	// it) and silent_source's silence (it fires when no event came for Age).
	Age time.Duration
	// Rate is error_rate's threshold, a share in [0, 1): it fires above it.
	Rate float64
	// MinAttempts is how many attempts error_rate needs in Window to judge.
	MinAttempts int
	// Growth is rising_backlog's min_growth.
	Growth int
	// Window is the span lag_p95 and error_rate look back over and the
	// span rising_backlog compares (its over:).
	Window time.Duration

	// Where is the rule's position in the config ("alerts.yaml:12:7"), for
	// logs.
	Where string
}
