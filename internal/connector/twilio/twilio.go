// Package twilio is the Twilio connector: a `kind: twilio` system is one
// Twilio account (or subaccount), and its action send_sms sends a text
// message through the Programmable Messaging API, classifying Twilio's error
// codes as permanent (bad or unsubscribed numbers) or transient.
package twilio

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

const (
	kindName       = "twilio"
	defaultBaseURL = "https://api.twilio.com"
	defaultTimeout = 30 * time.Second
)

var (
	accountSIDRe = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDRe = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
)

// Register adds the "twilio" kind to r.
func Register(r *connector.Registry) {
	r.Add(connector.Kind{
		Name:      kindName,
		Doc:       "Twilio Programmable Messaging: sends SMS from a number or a messaging service.",
		NewConfig: func() any { return &Config{} },
		Open:      open,
		Actions:   []connector.ActionSpec{sendSMSSpec},
	})
}

// Config is the YAML config of a `kind: twilio` system.
type Config struct {
	// AccountSID is the account's SID, "AC" and 32 hex digits. Required. It
	// is the basic-auth user and part of every request path.
	AccountSID string `yaml:"account_sid" doc:"The account SID, AC and 32 hex digits. Required."`
	// AuthToken is the account's auth token, the basic-auth password.
	// Required.
	AuthToken secret.Value `yaml:"auth_token" doc:"The account's auth token, the basic-auth password. Required."`
	// BaseURL defaults to "https://api.twilio.com"; tests point it at a fake.
	BaseURL string `yaml:"base_url" doc:"API base URL; default https://api.twilio.com."`
	// From is the default sender: an E.164 number ("+15550100"), a short
	// code or an alphanumeric sender id. A step's from overrides it.
	From string `yaml:"from" doc:"Default sender: an E.164 number, short code or alphanumeric id."`
	// MessagingServiceSID ("MG" and 32 hex digits) sends through a
	// messaging service, which picks the sender from its pool.
	MessagingServiceSID string `yaml:"messaging_service_sid" doc:"Default messaging service (MG…); Twilio picks the sender from its pool."`
	// StatusCallback is the default URL Twilio posts delivery status
	// updates to. A step's status_callback overrides it.
	StatusCallback string `yaml:"status_callback" doc:"Default URL Twilio posts delivery status updates to."`
	// Timeout bounds one whole call. Defaults to 30s.
	Timeout time.Duration `yaml:"timeout" doc:"Bounds one call; default 30s."`
}

// system is one opened `kind: twilio` system. It is immutable after open
// and so safe for concurrent use.
type system struct {
	messagesURL string // …/2010-04-01/Accounts/{AccountSid}/Messages.json
	messagesAt  string // its path, for error messages
	auth        string // the Authorization header value
	from        string
	serviceSID  string
	callback    string
	client      *http.Client
	redactor    *strings.Replacer
}

func open(p connector.OpenParams) (connector.System, error) {
	cfg, ok := p.Config.(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("twilio: config is %T, want *twilio.Config", p.Config)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	path := "/2010-04-01/Accounts/" + cfg.AccountSID + "/Messages.json"
	basic := base64.StdEncoding.EncodeToString([]byte(cfg.AccountSID + ":" + cfg.AuthToken.Reveal()))
	return &system{
		messagesURL: strings.TrimSuffix(cmp.Or(cfg.BaseURL, defaultBaseURL), "/") + path,
		messagesAt:  path,
		auth:        "Basic " + basic,
		from:        cfg.From,
		serviceSID:  cfg.MessagingServiceSID,
		callback:    cfg.StatusCallback,
		client:      webapi.NewClient(cmp.Or(cfg.Timeout, defaultTimeout)),
		redactor:    strings.NewReplacer(basic, "[redacted]", cfg.AuthToken.Reveal(), "[redacted]"),
	}, nil
}

// validate reports every problem of c at once, naming the key and never
// echoing the auth token.
func (c *Config) validate() error {
	var errs []error
	switch {
	case c.AccountSID == "":
		errs = append(errs, errors.New("account_sid: required"))
	case !accountSIDRe.MatchString(c.AccountSID):
		errs = append(errs, errors.New(`account_sid: want "AC" followed by 32 hex digits`))
	}
	switch {
	case c.AuthToken.IsZero():
		errs = append(errs, errors.New("auth_token: required"))
	case strings.ContainsFunc(c.AuthToken.Reveal(), func(r rune) bool { return r < ' ' || r == 0x7f }):
		errs = append(errs, errors.New("auth_token: must not contain control characters"))
	}
	if c.BaseURL != "" {
		if err := checkURL(c.BaseURL, true); err != nil {
			errs = append(errs, fmt.Errorf("base_url: %w", err))
		}
	}
	if c.MessagingServiceSID != "" && !serviceSIDRe.MatchString(c.MessagingServiceSID) {
		errs = append(errs, errors.New(`messaging_service_sid: want "MG" followed by 32 hex digits`))
	}
	if c.StatusCallback != "" {
		if err := checkURL(c.StatusCallback, false); err != nil {
			errs = append(errs, fmt.Errorf("status_callback: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// checkURL checks an absolute http(s) URL; a base URL may not carry
// credentials, a query or a fragment.
func checkURL(raw string, base bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "":
		return errors.New("must be an absolute http or https URL")
	case base && u.User != nil:
		return errors.New("must not contain credentials; use account_sid and auth_token")
	case base && (u.RawQuery != "" || u.ForceQuery || u.Fragment != ""):
		return errors.New("must not contain a query or fragment")
	}
	return nil
}

// Action returns the send_sms action.
func (s *system) Action(name string) (connector.Action, bool) {
	if name != sendSMSSpec.Name {
		return nil, false
	}
	return &sendSMS{sys: s}, true
}

func (s *system) redact(msg string) string { return s.redactor.Replace(msg) }

var (
	_ connector.System = (*system)(nil)
	_ connector.Action = (*sendSMS)(nil)
)
