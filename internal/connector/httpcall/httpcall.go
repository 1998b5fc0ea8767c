// Package httpcall is the generic HTTP connector: a `kind: http` system is one
// base URL with fixed headers and auth, and its single action, request, calls a
// path under that base URL and classifies the answer as success, transient or
// permanent failure.
package httpcall

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

const (
	kindName       = "http"
	actionRequest  = "request"
	defaultTimeout = 30 * time.Second
)

// Register adds the "http" kind to r.
func Register(r *connector.Registry) {
	r.Add(connector.Kind{
		Name:      kindName,
		Doc:       "A generic HTTP API reached through one base URL, with optional headers and auth.",
		NewConfig: func() any { return &Config{} },
		Open:      open,
		Actions:   []connector.ActionSpec{requestSpec},
	})
}

// Config is the YAML config of a `kind: http` system.
type Config struct {
	// BaseURL is the absolute http or https URL every request goes under, e.g.
	// "https://api.example.com/v1". Required. It may not carry credentials, a
	// query or a fragment.
	BaseURL string `yaml:"base_url" doc:"Absolute http or https URL every request goes under. Required; no credentials, query or fragment."`
	// Headers are sent with every request; a step's headers override them.
	Headers map[string]string `yaml:"headers" doc:"Headers sent with every request; a step's headers override them."`
	// Auth authenticates every request. At most one method may be set.
	Auth Auth `yaml:"auth" doc:"How requests authenticate: at most one of bearer, basic, api_key and oauth2."`
	// Timeout bounds one whole call, reading the response included. Defaults
	// to 30s. It bounds an OAuth2 token request on its own as well.
	Timeout time.Duration `yaml:"timeout" doc:"Bounds one call, reading the response included; default 30s."`
	// PermanentStatuses are response statuses that fail the step at once
	// (dead letter), overriding the default mapping; e.g. [409, 422]. Each
	// is 100-599 but not 2xx, and none may be in TransientStatuses.
	PermanentStatuses []int `yaml:"permanent_statuses" doc:"Statuses that fail a step permanently, overriding the default mapping, e.g. [409, 422]."`
	// TransientStatuses are response statuses that are retried with
	// backoff (honouring Retry-After), overriding the default mapping; e.g.
	// [423] for an API that answers 423 Locked while a record is busy.
	TransientStatuses []int `yaml:"transient_statuses" doc:"Statuses retried with backoff, overriding the default mapping, e.g. [423]."`
}

// Auth selects how requests authenticate. At most one field may be set.
type Auth struct {
	// Bearer is sent as "Authorization: Bearer <token>".
	Bearer secret.Value `yaml:"bearer" doc:"A static token sent as Authorization: Bearer."`
	// Basic is sent as HTTP basic authentication.
	Basic *BasicAuth `yaml:"basic" doc:"HTTP basic authentication."`
	// APIKey is sent in a header or a query parameter.
	APIKey *APIKeyAuth `yaml:"api_key" doc:"A static key in a header or a query parameter."`
	// OAuth2 fetches bearer tokens with the client credentials grant.
	OAuth2 *OAuth2Auth `yaml:"oauth2" doc:"OAuth2 client credentials: tokens fetched, cached and refreshed."`
}

// BasicAuth is HTTP basic authentication (RFC 7617).
type BasicAuth struct {
	// User is required and may not contain ':'.
	User secret.Value `yaml:"user" doc:"Required; may not contain ':'."`
	// Password may be empty.
	Password secret.Value `yaml:"password" doc:"May be empty."`
}

// APIKeyAuth sends a static key with every request, in exactly one of a
// header or a query parameter.
type APIKeyAuth struct {
	// Header is the header name, e.g. "X-API-Key".
	Header string `yaml:"header" doc:"Header name, e.g. X-API-Key; set header or query."`
	// Query is the query parameter name, e.g. "api_key". Errors redact it.
	Query string `yaml:"query" doc:"Query parameter name, e.g. api_key; set header or query."`
	// Value is the key. Required.
	Value secret.Value `yaml:"value" doc:"The key. Required."`
}

// system is one opened `kind: http` system. It is immutable after open and so
// safe for concurrent use.
type system struct {
	base     *url.URL
	origin   string    // scheme://host:port of base, for comparing absolute paths
	baseSegs []segment // base path, already cleaned
	headers  http.Header
	auth     authParams
	oauth    *tokenSource // nil unless auth.oauth2 is set
	classes  map[int]bool // status → transient (true) or permanent (false), overriding the default
	client   *http.Client
	redactor *strings.Replacer // nil when there are no secrets
}

// authParams is Auth reduced to what each request sets.
type authParams struct {
	header, headerValue string
	query, queryValue   string
}

func open(p connector.OpenParams) (connector.System, error) {
	cfg, ok := p.Config.(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("http: config is %T, want *httpcall.Config", p.Config)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base, segs, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err // unreachable: validate parsed it already
	}

	headers := make(http.Header, len(cfg.Headers))
	for k, v := range cfg.Headers {
		headers.Set(k, v)
	}

	client := webapi.NewClient(cmp.Or(cfg.Timeout, defaultTimeout))

	s := &system{
		base:     base,
		origin:   origin(base),
		baseSegs: segs,
		headers:  headers,
		auth:     cfg.Auth.params(),
		classes:  cfg.statusClasses(),
		client:   client,
		redactor: cfg.Auth.redactor(),
	}
	if o := cfg.Auth.OAuth2; o != nil {
		s.oauth = newTokenSource(o, client, s.redact)
	}
	return s, nil
}

// Action returns the request action.
func (s *system) Action(name string) (connector.Action, bool) {
	if name != actionRequest {
		return nil, false
	}
	return &requestAction{sys: s}, true
}

// validate reports every problem of c at once. Messages name the config key
// and never include secret values or the base URL (it may embed one).
func (c *Config) validate() error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("base_url: required"))
	} else if _, _, err := parseBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		if !validToken(name) {
			errs = append(errs, fmt.Errorf("headers: %q is not a valid header name", name))
		} else if !validHeaderValue(c.Headers[name]) {
			errs = append(errs, fmt.Errorf("headers.%s: value must not contain control characters", name))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	errs = append(errs, c.Auth.validate()...)
	errs = append(errs, validateStatuses(c.PermanentStatuses, c.TransientStatuses)...)
	return errors.Join(errs...)
}

func (a Auth) validate() []error {
	var errs []error
	n := 0
	if !a.Bearer.IsZero() {
		n++
		if !validHeaderValue(a.Bearer.Reveal()) {
			errs = append(errs, errors.New("auth.bearer: must not contain control characters"))
		}
	}
	if b := a.Basic; b != nil {
		n++
		switch {
		case b.User.IsZero():
			errs = append(errs, errors.New("auth.basic.user: required"))
		case strings.Contains(b.User.Reveal(), ":"):
			errs = append(errs, errors.New("auth.basic.user: must not contain ':'"))
		}
	}
	if k := a.APIKey; k != nil {
		n++
		switch {
		case (k.Header == "") == (k.Query == ""):
			errs = append(errs, errors.New("auth.api_key: set exactly one of header and query"))
		case k.Header != "" && !validToken(k.Header):
			errs = append(errs, fmt.Errorf("auth.api_key.header: %q is not a valid header name", k.Header))
		}
		switch {
		case k.Value.IsZero():
			errs = append(errs, errors.New("auth.api_key.value: required"))
		case k.Header != "" && !validHeaderValue(k.Value.Reveal()):
			errs = append(errs, errors.New("auth.api_key.value: must not contain control characters"))
		}
	}
	if a.OAuth2 != nil {
		n++
		errs = append(errs, a.OAuth2.validate()...)
	}
	if n > 1 {
		errs = append(errs, errors.New("auth: set at most one of bearer, basic, api_key and oauth2"))
	}
	return errs
}

func (a Auth) params() authParams {
	switch {
	case !a.Bearer.IsZero():
		return authParams{header: "Authorization", headerValue: "Bearer " + a.Bearer.Reveal()}
	case a.Basic != nil:
		return authParams{header: "Authorization", headerValue: "Basic " + basicToken(a.Basic)}
	case a.APIKey != nil && a.APIKey.Header != "":
		return authParams{header: http.CanonicalHeaderKey(a.APIKey.Header), headerValue: a.APIKey.Value.Reveal()}
	case a.APIKey != nil:
		return authParams{query: a.APIKey.Query, queryValue: a.APIKey.Value.Reveal()}
	}
	return authParams{}
}

func basicToken(b *BasicAuth) string {
	return base64.StdEncoding.EncodeToString([]byte(b.User.Reveal() + ":" + b.Password.Reveal()))
}

// redactor replaces every secret, in each form it is sent in, with
// "[redacted]". Error messages pass through it because a remote side may echo
// the request (headers, URL) in its error body.
func (a Auth) redactor() *strings.Replacer {
	plain := []string{a.Bearer.Reveal()}
	if b := a.Basic; b != nil {
		plain = append(plain, b.User.Reveal(), b.Password.Reveal(), basicToken(b))
	}
	if k := a.APIKey; k != nil {
		v := k.Value.Reveal()
		plain = append(plain, v, url.QueryEscape(v), url.PathEscape(v))
	}
	if o := a.OAuth2; o != nil {
		plain = append(plain, o.secrets()...)
	}
	plain = slices.DeleteFunc(plain, func(s string) bool { return s == "" })
	if len(plain) == 0 {
		return nil
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(plain, func(x, y string) int { return len(y) - len(x) })
	plain = slices.Compact(plain)
	pairs := make([]string, 0, 2*len(plain))
	for _, s := range plain {
		pairs = append(pairs, s, "[redacted]")
	}
	return strings.NewReplacer(pairs...)
}

// redact scrubs the configured secrets from msg, and token too: an OAuth2
// access token is fetched at run time, so no Replacer knows it in advance.
func (s *system) redact(msg, token string) string {
	if s.redactor != nil {
		msg = s.redactor.Replace(msg)
	}
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "[redacted]")
	}
	return msg
}

// parseBaseURL checks base_url and returns it with its cleaned path segments.
// Its errors never echo the URL.
func parseBaseURL(raw string) (*url.URL, []segment, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "" {
		return nil, nil, errors.New("base_url: must be an absolute http or https URL")
	}
	switch {
	case u.User != nil:
		return nil, nil, errors.New("base_url: must not contain credentials; use auth")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, nil, errors.New("base_url: must not contain a query; use auth.api_key or the step's query")
	case u.Fragment != "":
		return nil, nil, errors.New("base_url: must not contain a fragment")
	}
	segs, err := resolvePath(nil, 0, u.EscapedPath())
	if err != nil {
		return nil, nil, fmt.Errorf("base_url: %w", err)
	}
	// A trailing slash on the base adds nothing: paths are joined under it.
	if n := len(segs); n > 0 && segs[n-1].dec == "" {
		segs = segs[:n-1]
	}
	return u, segs, nil
}

// origin returns scheme://host:port with the default port made explicit, so
// "https://x" and "https://X:443" compare equal.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// validToken reports whether s is an RFC 9110 token (header names, methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s has no control characters but tab, which
// net/http would otherwise reject at send time as if it were a network error.
func validHeaderValue(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var (
	_ connector.System = (*system)(nil)
	_ connector.Action = (*requestAction)(nil)
)
