// Package hubspot is the HubSpot CRM connector: a `kind: hubspot` system is
// one HubSpot account reached with a private-app token, and its actions
// upsert and update contacts, add notes and tasks to them, and create, move
// and associate deals through the CRM v3/v4 REST API.
package hubspot

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
	kindName       = "hubspot"
	defaultBaseURL = "https://api.hubapi.com"
	defaultTimeout = 30 * time.Second
)

// Register adds the "hubspot" kind to r.
func Register(r *connector.Registry) {
	specs := make([]connector.ActionSpec, len(actions))
	for i, a := range actions {
		specs[i] = a.spec
	}
	r.Add(connector.Kind{
		Name:      kindName,
		Doc:       "HubSpot CRM (contacts, notes, tasks, deals) through a private-app token.",
		NewConfig: func() any { return &Config{} },
		Open:      open,
		Actions:   specs,
	})
}

// Config is the YAML config of a `kind: hubspot` system.
type Config struct {
	// BaseURL is the API's base URL. Defaults to "https://api.hubapi.com";
	// tests point it at a fake. It may carry a path prefix (for a proxy) but
	// no credentials, query or fragment.
	BaseURL string `yaml:"base_url" doc:"API base URL; default https://api.hubapi.com. May carry a path prefix, no credentials, query or fragment."`
	// Token is the private app's access token, sent as a bearer token.
	// Required.
	Token secret.Value `yaml:"token" doc:"The private app's access token (pat-…), sent as a bearer token. Required."`
	// Timeout bounds one whole call, reading the response included.
	// Defaults to 30s.
	Timeout time.Duration `yaml:"timeout" doc:"Bounds one call, reading the response included; default 30s."`
}

// system is one opened `kind: hubspot` system. It is immutable after open
// and so safe for concurrent use.
type system struct {
	base     string // scheme://host/prefix, without a trailing slash
	auth     string // the Authorization header value
	client   *http.Client
	redactor *strings.Replacer
	nowFunc  func() time.Time
}

func open(p connector.OpenParams) (connector.System, error) {
	cfg, ok := p.Config.(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("hubspot: config is %T, want *hubspot.Config", p.Config)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(cmp.Or(cfg.BaseURL, defaultBaseURL), "/")

	token := cfg.Token.Reveal()
	return &system{
		base:     base,
		auth:     "Bearer " + token,
		client:   webapi.NewClient(cmp.Or(cfg.Timeout, defaultTimeout)),
		redactor: strings.NewReplacer(token, "[redacted]"),
		nowFunc:  time.Now,
	}, nil
}

// validate reports every problem of c at once. Messages name the config key
// and never include the token.
func (c *Config) validate() error {
	var errs []error
	if c.BaseURL != "" {
		if err := checkBaseURL(c.BaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.Token.IsZero():
		errs = append(errs, errors.New("token: required"))
	case strings.ContainsFunc(c.Token.Reveal(), func(r rune) bool { return r < ' ' || r == 0x7f }):
		errs = append(errs, errors.New("token: must not contain control characters"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "":
		return errors.New("base_url: must be an absolute http or https URL")
	case u.User != nil:
		return errors.New("base_url: must not contain credentials; use token")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return errors.New("base_url: must not contain a query or fragment")
	}
	return nil
}

// Action returns the named action.
func (s *system) Action(name string) (connector.Action, bool) {
	for _, a := range actions {
		if a.spec.Name == name {
			return &action{sys: s, def: a}, true
		}
	}
	return nil, false
}

func (s *system) redact(msg string) string { return s.redactor.Replace(msg) }

var (
	_ connector.System = (*system)(nil)
	_ connector.Action = (*action)(nil)
)
