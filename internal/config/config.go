// Package config reads a Switchboard config file: YAML decoded strictly, with
// ${NAME} environment references resolved at load and every error naming
// file:line:col. It only parses; the flow package checks the parsed config
// against the connector registry and compiles it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/secret"
)

// Config is one config file.
type Config struct {
	// Version of the config format. Must be 1.
	Version int `yaml:"version"`
	// Store selects the database: "sqlite:PATH" (relative paths are relative
	// to the config file) or "postgres://user:pass@host:port/db?..." for
	// several nodes sharing one database (pgx pool parameters such as
	// pool_max_conns apply). Defaults to sqlite:switchboard.db beside the
	// config.
	Store secret.Value `yaml:"store"`
	// Workers is how many runs execute at once. Defaults to 16.
	Workers int `yaml:"workers"`
	// Lease is how long a claimed run stays with its worker without renewal;
	// workers renew it while a step runs. Defaults to 30s.
	Lease time.Duration `yaml:"lease"`
	// ShutdownGrace bounds a graceful stop (SIGTERM): how long in-flight
	// requests and steps may take to finish before they are cut off.
	// Default 10s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// Retention is how long events, their runs and attempts are kept after
	// they were received (runs still pending are never deleted). Default
	// 30d. Accepts a "d" suffix for days.
	Retention time.Duration `yaml:"retention"`
	// Retry is the default retry policy of every step.
	Retry Retry `yaml:"retry"`
	// Systems are the external systems, by name. Each is decoded by its kind.
	Systems map[string]*yaml.Node `yaml:"systems"`
	// Sources are the inbound event sources, by name.
	Sources map[string]Source `yaml:"sources"`
	// Flows are the flows, by name.
	Flows map[string]Flow `yaml:"flows"`
	// Alerts configures alert rules and their notifications. Optional.
	Alerts *Alerts `yaml:"alerts"`
	// Entities names each entity type's system of record and mirrors.
	// Optional; see docs/systems-of-record.md.
	Entities map[string]Entity `yaml:"entities"`
	// Loops configures echo suppression and the hop limit. Optional.
	Loops *Loops `yaml:"loops"`
	// Tracing exports OpenTelemetry spans over OTLP/HTTP. Optional: without
	// it no spans are made.
	Tracing *Tracing `yaml:"tracing"`

	// File is the path the config was read from.
	File string `yaml:"-"`
	// Root is the parsed document, for positions of later errors.
	Root *yaml.Node `yaml:"-"`
	// Getenv resolves ${NAME} in nodes decoded later (system configs).
	Getenv func(string) (string, bool) `yaml:"-"`
}

// SystemLimits are the keys every system accepts beside its kind's own:
// how hard Switchboard may push it. They apply per node.
type SystemLimits struct {
	// RateLimit is a token bucket: PerSecond requests per second, Burst
	// at once (default 1).
	RateLimit *RateLimit `yaml:"rate_limit"`
	// Concurrency caps requests in flight to the system.
	Concurrency int `yaml:"concurrency"`
	// Circuit opens after Failures consecutive transient failures and
	// holds the system's runs for Cooldown (default 30s) before probing.
	Circuit *Circuit `yaml:"circuit"`
}

// RateLimit is a system's token bucket.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Circuit is a system's circuit breaker.
type Circuit struct {
	Failures int           `yaml:"failures"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// Retry is a retry policy. Zero fields inherit from the enclosing level
// (step → flow → config → built-in defaults).
type Retry struct {
	// Attempts is the maximum number of attempts of a step, including the
	// first. Default 8.
	Attempts int `yaml:"attempts"`
	// Base is the first backoff. Default 1s.
	Base time.Duration `yaml:"base"`
	// Cap bounds every backoff, including a Retry-After. Default 10m.
	Cap time.Duration `yaml:"cap"`
}

// Tracing is the tracing: section: where OpenTelemetry spans go.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/HTTP base URL, such as
	// http://collector:4318; spans are posted (protobuf) to
	// OTLPEndpoint/v1/traces. Defaults to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// or OTEL_EXPORTER_OTLP_ENDPOINT from the environment, else
	// http://localhost:4318.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// Headers are sent with every export, such as an API key; their values
	// are never printed. Defaults to OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]secret.Value `yaml:"headers"`
	// SampleRatio is the share of new traces recorded, 0 to 1. Defaults to
	// 1 (every event). A trace begun upstream (an inbound traceparent)
	// follows the sender's sampling decision.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans. Defaults to
	// OTEL_SERVICE_NAME, else "switchboard".
	ServiceName string `yaml:"service_name"`
}

// Source is an inbound event source.
type Source struct {
	// Webhook makes the source receive POST /hooks/NAME.
	Webhook *Webhook `yaml:"webhook"`
	// Key is a jq expression giving the idempotency key. Default: the
	// Standard Webhooks webhook-id when verified that way, else the SHA-256
	// of the body.
	Key string `yaml:"key"`
	// Entity names what the events are about (an entity of entities:).
	Entity string `yaml:"entity"`
	// System names the system the events come from, so an event that is
	// the echo of our own write to that system is recognised. Optional.
	System string `yaml:"system"`
	// RecordID is jq giving the id of the record an event is about, as the
	// system names it: for echo suppression, and with Version the key of a
	// webhook source a poll backs up (backstop_for).
	RecordID string `yaml:"record_id"`
	// Version is jq giving the version of that record (updated_at, say).
	Version string `yaml:"version"`
	// Record is a jq expression giving the record's fields, compared with
	// the fields our writes set. Default: the whole payload (.).
	Record string `yaml:"record"`
	// Poll makes the source call a system's API on a schedule instead of
	// receiving webhooks.
	Poll *Poll `yaml:"poll"`
	// Schedule makes the source emit a timer event on a schedule, for flows
	// that run periodically.
	Schedule *Timing `yaml:"schedule"`
	// Reconcile makes the source compare an entity's records in its owner
	// and a mirror on a schedule, emitting the differences.
	Reconcile *Reconcile `yaml:"reconcile"`
}

// Webhook configures how a webhook source accepts requests.
type Webhook struct {
	// Verify checks each request's signature. Optional, but `check` warns
	// when it is missing.
	Verify *Verify `yaml:"verify"`
	// MaxBody is the largest accepted body. Default 1MiB.
	MaxBody ByteSize `yaml:"max_body"`
	// Format is "json" (default) or "form" (application/x-www-form-urlencoded).
	Format string `yaml:"format"`
}

// Verify configures signature verification.
type Verify struct {
	// Scheme is "hmac-sha256", "standard-webhooks", "stripe", "github",
	// "shopify" or "twilio".
	Scheme string `yaml:"scheme"`
	// Header carries the signature (hmac-sha256 only).
	Header string `yaml:"header"`
	// Secret is the signing secret; "whsec_..." for standard-webhooks.
	Secret secret.Value `yaml:"secret"`
	// Encoding of the signature: "hex" (default) or "base64" (hmac-sha256).
	Encoding string `yaml:"encoding"`
	// Prefix before the signature, such as "sha256=" (hmac-sha256).
	Prefix string `yaml:"prefix"`
	// Tolerance is the accepted clock skew of timestamped schemes
	// (standard-webhooks, stripe). Default 5m.
	Tolerance time.Duration `yaml:"tolerance"`
	// PublicURL is the URL the sender calls, as it sees it (twilio signs the
	// full URL; behind a proxy the node cannot know it). Default: rebuilt
	// from the request (Host, X-Forwarded-Proto, path and query).
	PublicURL string `yaml:"public_url"`
}

// Flow is a flow: when an event arrives on a source, run steps in order.
type Flow struct {
	// On names the source whose events start the flow.
	On string `yaml:"on"`
	// When is an optional jq condition on the event payload; the flow runs
	// only if it is true.
	When string `yaml:"when"`
	// Retry overrides the retry policy for the flow's steps.
	Retry Retry `yaml:"retry"`
	// Steps run in order.
	Steps []Step `yaml:"steps"`
}

// Step is one action in a flow.
type Step struct {
	// ID names the step; later steps read its output as $steps.ID.
	ID string `yaml:"id"`
	// Do is the action, SYSTEM.ACTION.
	Do string `yaml:"do"`
	// With are the action's inputs: every leaf is a jq expression.
	With *yaml.Node `yaml:"with"`
	// Retry overrides the retry policy for this step.
	Retry Retry `yaml:"retry"`
	// Writes names the entity the step writes in its system, for actions
	// that do not declare one (a generic http request).
	Writes string `yaml:"writes"`
	// RecordID is a jq expression giving the id of the record written, as
	// the target system names it; $steps holds this step's own output
	// once the call answered (for a create).
	RecordID string `yaml:"record_id"`
	// Fields are the entity's fields the step writes, by field name, each a
	// jq expression. Default: the action's inputs (an http request's body).
	Fields *yaml.Node `yaml:"fields"`
}

// Load reads and decodes a config file. getenv resolves ${NAME}.
func Load(path string, getenv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, getenv)
}

// Parse decodes config data; name is used in errors.
func Parse(name string, data []byte, getenv func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxError(name, err)
	}
	if root.Kind == 0 {
		return nil, &Error{File: name, Msg: "the file is empty"}
	}
	// A config is one document: what follows a "---" would otherwise be
	// dropped without a word (its flows never run).
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(name, err)
		}
		if len(more.Content) > 0 && !isNull(more.Content[0]) {
			return nil, ErrorAt(name, more.Content[0], "", "a second YAML document (after ---): a config is one document; merge it into the first")
		}
	}
	c := &Config{File: name, Root: &root, Getenv: getenv}
	d := &Decoder{File: name, Getenv: getenv}
	d.Decode(&root, "", c)
	if c.Version != 1 && len(d.Errs) == 0 {
		// Point at the version's value, or at the top of the document when
		// the key is missing.
		at := root.Content[0]
		for i := 0; at.Kind == yaml.MappingNode && i+1 < len(at.Content); i += 2 {
			if at.Content[i].Value == "version" {
				at = at.Content[i+1]
				break
			}
		}
		d.Errs = append(d.Errs, ErrorAt(name, at, "version", "unsupported version %d (want 1)", c.Version))
	}
	if len(d.Errs) > 0 {
		return nil, errors.Join(d.Errs...)
	}
	return c, nil
}

// StorePath returns the SQLite path of the store, resolved against the
// config file's directory, or "" if the store is not SQLite.
func (c *Config) StorePath() string {
	s := c.Store.Reveal()
	if s == "" {
		s = "sqlite:switchboard.db"
	}
	p, ok := strings.CutPrefix(s, "sqlite:")
	if !ok {
		return ""
	}
	if !filepath.IsAbs(p) && c.File != "" {
		p = filepath.Join(filepath.Dir(c.File), p)
	}
	return p
}

// PostgresDSN returns the store's PostgreSQL DSN, or "" if the store is
// not PostgreSQL.
func (c *Config) PostgresDSN() string {
	s := c.Store.Reveal()
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return s
	}
	return ""
}

// syntaxError is a yaml.v3 syntax error at its line.
func syntaxError(name string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := yamlErrorLine(err)
	msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", line))
	return &Error{File: name, Line: line, Msg: msg}
}

// yamlErrorLine extracts "line N" from a yaml.v3 syntax error.
func yamlErrorLine(err error) int {
	var n int
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		fmt.Sscanf(s[i+5:], "%d", &n)
	}
	return n
}
