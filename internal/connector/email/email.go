// Package email is the e-mail connector: a `kind: email` system sends mail
// through an SMTP server (submission with STARTTLS, or implicit TLS) or the
// SendGrid v3 API, and its action send delivers one message with a text
// part, an HTML part or both.
package email

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

const (
	kindName           = "email"
	defaultTimeout     = 30 * time.Second
	defaultSMTPPort    = 587
	implicitTLSPort    = 465
	defaultSendGridURL = "https://api.sendgrid.com"
)

// Register adds the "email" kind to r.
func Register(r *connector.Registry) {
	r.Add(connector.Kind{
		Name:      kindName,
		Doc:       "E-mail through an SMTP server or the SendGrid API.",
		NewConfig: func() any { return &Config{} },
		Open:      open,
		Actions:   []connector.ActionSpec{sendSpec},
	})
}

// Config is the YAML config of a `kind: email` system.
type Config struct {
	// Transport is "smtp" or "sendgrid". Required; the block of the same
	// name configures it, and the other block must be absent.
	Transport string `yaml:"transport" doc:"smtp or sendgrid. Required; the block of that name configures it."`
	// SMTP configures transport: smtp.
	SMTP *SMTPConfig `yaml:"smtp" doc:"The SMTP server, for transport smtp."`
	// SendGrid configures transport: sendgrid.
	SendGrid *SendGridConfig `yaml:"sendgrid" doc:"The SendGrid account, for transport sendgrid."`
	// From is the default sender, e.g. "Acme Plumbing <office@acme.example>".
	// A step's from overrides it; one of the two is required.
	From string `yaml:"from" doc:"Default sender, e.g. \"Acme <office@acme.example>\"."`
	// ReplyTo is the default Reply-To address. A step's reply_to overrides it.
	ReplyTo string `yaml:"reply_to" doc:"Default Reply-To address."`
	// Timeout bounds one send: for SMTP, each network operation; for
	// SendGrid, the whole request. Defaults to 30s.
	Timeout time.Duration `yaml:"timeout" doc:"SMTP: each network operation; SendGrid: the whole request. Default 30s."`
}

// SMTPConfig is an SMTP submission server.
type SMTPConfig struct {
	// Host is the server's host name. Required. TLS certificates are
	// checked against it.
	Host string `yaml:"host" doc:"The server's host name; TLS certificates are checked against it. Required."`
	// Port defaults to 587 (submission with STARTTLS). 465 means implicit
	// TLS: the connection is TLS from the first byte.
	Port int `yaml:"port" doc:"Default 587 (STARTTLS); 465 is implicit TLS."`
	// Username and Password authenticate (SMTP AUTH, the strongest
	// mechanism the server offers over TLS). Both or neither.
	Username string       `yaml:"username" doc:"SMTP AUTH user; set with password."`
	Password secret.Value `yaml:"password" doc:"SMTP AUTH password; set with username."`
	// StartTLS requires STARTTLS before anything else is sent. Defaults to
	// true. It may be false only with port 465 (implicit TLS) or
	// insecure_plaintext, so mail and passwords never cross the network
	// in clear text by accident.
	StartTLS *bool `yaml:"starttls" doc:"Require STARTTLS before sending; default true."`
	// InsecurePlaintext talks to the server without any TLS (and sends
	// AUTH PLAIN in clear text). For tests and local relays only.
	InsecurePlaintext bool `yaml:"insecure_plaintext" doc:"No TLS at all, for tests and local relays only."`
}

// SendGridConfig is a SendGrid account.
type SendGridConfig struct {
	// APIKey is an API key with the Mail Send permission. Required.
	APIKey secret.Value `yaml:"api_key" doc:"An API key with Mail Send permission. Required."`
	// BaseURL defaults to "https://api.sendgrid.com" (EU accounts use
	// "https://api.eu.sendgrid.com"); tests point it at a fake.
	BaseURL string `yaml:"base_url" doc:"API base URL; default https://api.sendgrid.com (EU accounts: https://api.eu.sendgrid.com)."`
}

// transport delivers one checked message.
type transport interface {
	send(ctx context.Context, m *message, idempotencyKey string) (connector.Result, error)
}

// system is one opened `kind: email` system. It is immutable after open and
// so safe for concurrent use.
type system struct {
	from    *mail.Address // nil when not configured
	replyTo *mail.Address // nil when not configured
	tr      transport
}

func open(p connector.OpenParams) (connector.System, error) {
	cfg, ok := p.Config.(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("email: config is %T, want *email.Config", p.Config)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &system{}
	s.from, _ = parseAddress(cfg.From)
	s.replyTo, _ = parseAddress(cfg.ReplyTo)
	timeout := cmp.Or(cfg.Timeout, defaultTimeout)
	switch cfg.Transport {
	case "smtp":
		tr, err := newSMTP(cfg.SMTP, timeout)
		if err != nil {
			return nil, err
		}
		s.tr = tr
	case "sendgrid":
		s.tr = newSendGrid(cfg.SendGrid, timeout)
	}
	return s, nil
}

// validate reports every problem of c at once, naming the key and never
// echoing a secret.
func (c *Config) validate() error {
	var errs []error
	switch c.Transport {
	case "":
		errs = append(errs, errors.New(`transport: required ("smtp" or "sendgrid")`))
	case "smtp":
		if c.SMTP == nil {
			errs = append(errs, errors.New("smtp: required with transport: smtp"))
		}
		if c.SendGrid != nil {
			errs = append(errs, errors.New("sendgrid: set only with transport: sendgrid"))
		}
	case "sendgrid":
		if c.SendGrid == nil {
			errs = append(errs, errors.New("sendgrid: required with transport: sendgrid"))
		}
		if c.SMTP != nil {
			errs = append(errs, errors.New("smtp: set only with transport: smtp"))
		}
	default:
		errs = append(errs, fmt.Errorf(`transport: want "smtp" or "sendgrid", got %q`, c.Transport))
	}
	if c.SMTP != nil && c.Transport == "smtp" {
		errs = append(errs, c.SMTP.validate()...)
	}
	if c.SendGrid != nil && c.Transport == "sendgrid" {
		errs = append(errs, c.SendGrid.validate()...)
	}
	for _, f := range []struct{ key, value string }{{"from", c.From}, {"reply_to", c.ReplyTo}} {
		if _, err := parseAddress(f.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *SMTPConfig) validate() []error {
	var errs []error
	switch {
	case c.Host == "":
		errs = append(errs, errors.New("smtp.host: required"))
	case net.ParseIP(c.Host) == nil && (strings.ContainsAny(c.Host, " /:@[]") || strings.HasPrefix(c.Host, "unix")):
		errs = append(errs, errors.New("smtp.host: want a host name or IP address, without port or scheme"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, errors.New("smtp.port: want 1 to 65535"))
	}
	switch {
	case c.Username == "" && !c.Password.IsZero():
		errs = append(errs, errors.New("smtp.username: required with smtp.password"))
	case c.Username != "" && c.Password.IsZero():
		errs = append(errs, errors.New("smtp.password: required with smtp.username"))
	}
	implicit := c.port() == implicitTLSPort
	switch {
	case c.InsecurePlaintext && implicit:
		errs = append(errs, errors.New("smtp.insecure_plaintext: port 465 is implicit TLS"))
	case c.InsecurePlaintext && c.StartTLS != nil && *c.StartTLS:
		errs = append(errs, errors.New("smtp.starttls: conflicts with insecure_plaintext"))
	case implicit && c.StartTLS != nil && *c.StartTLS:
		errs = append(errs, errors.New("smtp.starttls: port 465 uses implicit TLS, not STARTTLS; leave starttls unset"))
	case !implicit && !c.InsecurePlaintext && c.StartTLS != nil && !*c.StartTLS:
		errs = append(errs, errors.New("smtp.starttls: may be false only with port 465 (implicit TLS) or insecure_plaintext: true"))
	}
	return errs
}

func (c *SMTPConfig) port() int { return cmp.Or(c.Port, defaultSMTPPort) }

func (c *SendGridConfig) validate() []error {
	var errs []error
	switch {
	case c.APIKey.IsZero():
		errs = append(errs, errors.New("sendgrid.api_key: required"))
	case strings.ContainsFunc(c.APIKey.Reveal(), func(r rune) bool { return r < ' ' || r == 0x7f }):
		errs = append(errs, errors.New("sendgrid.api_key: must not contain control characters"))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "":
			errs = append(errs, errors.New("sendgrid.base_url: must be an absolute http or https URL"))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, errors.New("sendgrid.base_url: must not contain credentials, a query or a fragment"))
		}
	}
	return errs
}

// Action returns the send action.
func (s *system) Action(name string) (connector.Action, bool) {
	if name != sendSpec.Name {
		return nil, false
	}
	return &send{sys: s}, true
}

var (
	_ connector.System = (*system)(nil)
	_ connector.Action = (*send)(nil)
	_ transport        = (*smtpTransport)(nil)
	_ transport        = (*sendGrid)(nil)
)
