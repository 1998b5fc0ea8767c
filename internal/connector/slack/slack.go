// Package slack is the Slack connector: a `kind: slack` system posts to one
// workspace through an incoming webhook (post_webhook), a bot token's
// chat.postMessage (post_message), or both, passing Block Kit blocks
// through as given.
package slack

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

const (
	kindName       = "slack"
	defaultBaseURL = "https://slack.com/api"
	defaultTimeout = 30 * time.Second
	// minSecretPath is the shortest webhook path redacted on its own; a
	// shorter one ("/", "/hook") carries no secret and would garble text.
	minSecretPath = 12
)

// Register adds the "slack" kind to r.
func Register(r *connector.Registry) {
	r.Add(connector.Kind{
		Name:      kindName,
		Doc:       "Slack messages through an incoming webhook or a bot token's chat.postMessage.",
		NewConfig: func() any { return &Config{} },
		Open:      open,
		Actions:   []connector.ActionSpec{postWebhookSpec, postMessageSpec},
	})
}

// Config is the YAML config of a `kind: slack` system. At least one of
// WebhookURL and BotToken is required; each enables its action.
type Config struct {
	// WebhookURL is an incoming webhook's URL
	// ("https://hooks.slack.com/services/…"). It is a secret: whoever
	// has it can post. It enables post_webhook.
	WebhookURL secret.Value `yaml:"webhook_url" doc:"An incoming webhook URL; enables post_webhook."`
	// BotToken is a bot user OAuth token ("xoxb-…") with the chat:write
	// scope. It enables post_message.
	BotToken secret.Value `yaml:"bot_token" doc:"A bot token (xoxb-…) with chat:write; enables post_message."`
	// BaseURL is the Web API's base URL for post_message. Defaults to
	// "https://slack.com/api"; tests point it at a fake.
	BaseURL string `yaml:"base_url" doc:"Web API base URL; default https://slack.com/api."`
	// Timeout bounds one whole call. Defaults to 30s.
	Timeout time.Duration `yaml:"timeout" doc:"Bounds one call; default 30s."`
}

// system is one opened `kind: slack` system. It is immutable after open and
// so safe for concurrent use.
type system struct {
	webhookURL     string // empty when not configured
	postMessageURL string // empty when there is no bot token
	auth           string // the Authorization header value for post_message
	client         *http.Client
	redactor       *strings.Replacer
}

func open(p connector.OpenParams) (connector.System, error) {
	cfg, ok := p.Config.(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("slack: config is %T, want *slack.Config", p.Config)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &system{
		webhookURL: cfg.WebhookURL.Reveal(),
		client:     webapi.NewClient(cmp.Or(cfg.Timeout, defaultTimeout)),
	}
	if !cfg.BotToken.IsZero() {
		s.postMessageURL = strings.TrimSuffix(cmp.Or(cfg.BaseURL, defaultBaseURL), "/") + "/chat.postMessage"
		s.auth = "Bearer " + cfg.BotToken.Reveal()
	}
	var pairs []string
	for _, sec := range []string{cfg.WebhookURL.Reveal(), cfg.BotToken.Reveal()} {
		if sec != "" {
			pairs = append(pairs, sec, "[redacted]")
		}
	}
	if u, err := url.Parse(s.webhookURL); err == nil && len(u.EscapedPath()) >= minSecretPath {
		// The path alone is the webhook's secret ("/services/T…/B…/…").
		pairs = append(pairs, u.EscapedPath(), "[redacted]")
	}
	s.redactor = strings.NewReplacer(pairs...)
	return s, nil
}

// validate reports every problem of c at once, naming the key and never
// echoing a secret.
func (c *Config) validate() error {
	var errs []error
	if c.WebhookURL.IsZero() && c.BotToken.IsZero() {
		errs = append(errs, errors.New("webhook_url or bot_token: required (set one or both)"))
	}
	if !c.WebhookURL.IsZero() {
		if err := checkURL(c.WebhookURL.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("webhook_url: %w", err))
		}
	}
	if strings.ContainsFunc(c.BotToken.Reveal(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("bot_token: must not contain control characters"))
	}
	if c.BaseURL != "" {
		if err := checkURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("base_url: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "":
		return errors.New("must be an absolute http or https URL")
	case u.User != nil:
		return errors.New("must not contain credentials")
	case u.Fragment != "":
		return errors.New("must not contain a fragment")
	}
	return nil
}

// Action returns the named action when the system is configured for it:
// post_webhook needs webhook_url and post_message needs bot_token, so a
// flow calling an action its system cannot perform fails at load, not at
// the first event.
func (s *system) Action(name string) (connector.Action, bool) {
	switch {
	case name == postWebhookSpec.Name && s.webhookURL != "":
		return &postWebhook{sys: s}, true
	case name == postMessageSpec.Name && s.postMessageURL != "":
		return &postMessage{sys: s}, true
	}
	return nil, false
}

func (s *system) redact(msg string) string { return s.redactor.Replace(msg) }

var (
	_ connector.System = (*system)(nil)
	_ connector.Action = (*postWebhook)(nil)
	_ connector.Action = (*postMessage)(nil)
)
