package httpcall

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

// OAuth2Auth fetches access tokens with the OAuth 2.0 client credentials
// grant (RFC 6749 section 4.4) and sends them as bearer tokens. A token is
// cached until shortly before it expires, and dropped when the API answers
// 401, so a revoked or rotated token costs one retried request.
type OAuth2Auth struct {
	// TokenURL is the authorization server's token endpoint, an absolute
	// http or https URL without credentials or fragment. Required.
	TokenURL string `yaml:"token_url" doc:"The token endpoint, an absolute http or https URL. Required."`
	// ClientID identifies the client. Required.
	ClientID string `yaml:"client_id" doc:"The client id. Required."`
	// ClientSecret authenticates the client. Required.
	ClientSecret secret.Value `yaml:"client_secret" doc:"The client secret. Required."`
	// Scopes are requested, space-separated, in the scope parameter.
	Scopes []string `yaml:"scopes" doc:"Scopes to request, e.g. [invoices.write]."`
	// Audience is sent as the audience parameter, which some servers
	// (Auth0, Okta) need to pick the API the token is for. Optional.
	Audience string `yaml:"audience" doc:"Sent as the audience parameter (Auth0, Okta). Optional."`
	// AuthStyle is how the client authenticates to the token endpoint:
	// "header" (HTTP basic, the RFC's default) or "body" (client_id and
	// client_secret form parameters). Empty tries header first, then body,
	// and remembers which worked.
	AuthStyle string `yaml:"auth_style" doc:"header (HTTP basic) or body (form parameters); default: try header, then body."`
}

func (o *OAuth2Auth) validate() []error {
	var errs []error
	if o.TokenURL == "" {
		errs = append(errs, errors.New("auth.oauth2.token_url: required"))
	} else if u, err := url.Parse(o.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "" {
		errs = append(errs, errors.New("auth.oauth2.token_url: must be an absolute http or https URL"))
	} else if u.User != nil {
		errs = append(errs, errors.New("auth.oauth2.token_url: must not contain credentials; use client_id and client_secret"))
	} else if u.Fragment != "" {
		errs = append(errs, errors.New("auth.oauth2.token_url: must not contain a fragment"))
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("auth.oauth2.client_id: required"))
	}
	if o.ClientSecret.IsZero() {
		errs = append(errs, errors.New("auth.oauth2.client_secret: required"))
	}
	for i, sc := range o.Scopes {
		if sc == "" || strings.ContainsFunc(sc, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
			// RFC 6749 section 3.3: scope tokens are printable ASCII without
			// space, '"' or '\'; several are joined with spaces.
			errs = append(errs, fmt.Errorf("auth.oauth2.scopes[%d]: %q is not a valid scope (list several scopes as separate items)", i, sc))
		}
	}
	switch o.AuthStyle {
	case "", "header", "body":
	default:
		errs = append(errs, fmt.Errorf("auth.oauth2.auth_style: %q is not header or body", o.AuthStyle))
	}
	return errs
}

// secrets returns the client secret in each form it is sent in, for the
// redactor: plain and form-encoded in a body, inside HTTP basic auth.
func (o *OAuth2Auth) secrets() []string {
	sec := o.ClientSecret.Reveal()
	if sec == "" {
		return nil
	}
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(o.ClientID) + ":" + url.QueryEscape(sec)))
	return []string{sec, url.QueryEscape(sec), basic}
}

// tokenSource caches one access token for a system and fetches a new one
// when it is missing, about to expire, or was refused by the API.
//
// It does not use oauth2.ReuseTokenSource: that binds the token request to
// the context it was built with, not to the step being run, and offers no
// way to drop a token the API refused before it expires.
type tokenSource struct {
	cfg    *clientcredentials.Config // a pointer: it caches the detected auth style
	client *http.Client
	redact func(msg, token string) string

	// sem is a one-slot lock that waiters can abandon when their context
	// ends. It serialises token requests, so concurrent steps share one
	// fetch instead of stampeding the token endpoint, and it guards tok.
	sem chan struct{}
	tok *oauth2.Token
}

func newTokenSource(o *OAuth2Auth, client *http.Client, redact func(msg, token string) string) *tokenSource {
	cfg := &clientcredentials.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret.Reveal(),
		TokenURL:     o.TokenURL,
		Scopes:       o.Scopes,
	}
	if o.Audience != "" {
		cfg.EndpointParams = url.Values{"audience": {o.Audience}}
	}
	switch o.AuthStyle {
	case "header":
		cfg.AuthStyle = oauth2.AuthStyleInHeader
	case "body":
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	return &tokenSource{cfg: cfg, client: client, redact: redact, sem: make(chan struct{}, 1)}
}

// token returns a valid access token, fetching one when the cached token is
// missing or expires within 10 seconds (oauth2.Token.Valid's margin). Its
// errors are classified: see fetchError.
func (ts *tokenSource) token(ctx context.Context) (string, error) {
	select {
	case ts.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("oauth2 token request: %w", ctx.Err())
	}
	defer func() { <-ts.sem }()
	if ts.tok.Valid() {
		return ts.tok.AccessToken, nil
	}
	tok, err := ts.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, ts.client))
	if err != nil {
		return "", ts.fetchError(ctx, err)
	}
	if !validHeaderValue(tok.AccessToken) {
		return "", connector.Permanent(errors.New("oauth2 token request: the token endpoint returned an access token with control characters"))
	}
	ts.tok = tok
	return tok.AccessToken, nil
}

// invalidate drops the cached token if it is refused, the token the API
// just answered 401 to. When a concurrent step has already replaced it, the
// newer token stays, so a burst of 401s costs one token request.
func (ts *tokenSource) invalidate(ctx context.Context, refused string) {
	select {
	case ts.sem <- struct{}{}:
	case <-ctx.Done():
		return // the next token call fails on ctx as well
	}
	defer func() { <-ts.sem }()
	if ts.tok != nil && ts.tok.AccessToken == refused {
		ts.tok = nil
	}
}

// fetchError classifies a failed token request. Network errors, timeouts,
// 408, 425, 429 and 5xx are transient: the endpoint may recover. Other
// answers, 400 and 401 (bad client credentials, unknown scope) above all,
// are permanent: retrying cannot fix the configuration. Messages never
// contain the client secret or the token URL's query.
func (ts *tokenSource) fetchError(ctx context.Context, err error) error {
	const what = "oauth2 token request"
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", what, ctxErr)
	}
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		return ts.statusError(re)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		// url.Error's text holds the token URL; keep only the cause.
		return webapi.Redacted(ts.redact(what+": "+ue.Err.Error(), ""), ue.Err)
	}
	msg := ts.redact(what+": "+strings.TrimPrefix(err.Error(), "oauth2: "), "")
	// The library reports an unreadable response body ("cannot fetch
	// token") as a plain error: the connection broke, so retry. Any other
	// plain error is a 2xx answer without a usable token (not JSON, no
	// access_token): the token_url is likely wrong, which no retry fixes.
	if strings.Contains(err.Error(), "cannot fetch token") {
		return errors.New(msg)
	}
	return connector.Permanent(errors.New(msg))
}

// tokenStatusError is a token endpoint's non-2xx answer (or a 2xx with an
// OAuth2 error code). requestAction.Do reports its status and body as the
// step's Result, so the attempt shows what the endpoint said and the
// executor sees a 401 from it like a 401 from the API.
type tokenStatusError struct {
	status int
	body   []byte // redacted
	err    error
}

func (e *tokenStatusError) Error() string { return e.err.Error() }
func (e *tokenStatusError) Unwrap() error { return e.err }

func (ts *tokenSource) statusError(re *oauth2.RetrieveError) error {
	status := 0
	var header http.Header
	if re.Response != nil {
		status, header = re.Response.StatusCode, re.Response.Header
	}
	msg := webapi.StatusMessage("oauth2 token request", status)
	switch {
	case re.ErrorCode != "":
		msg += ": " + re.ErrorCode
		if re.ErrorDescription != "" {
			msg += " (" + re.ErrorDescription + ")"
		}
	default:
		if snip := snippet(ts.redact(string(re.Body), "")); snip != "" {
			msg += ": " + snip
		}
	}
	if status == http.StatusBadRequest || status == http.StatusUnauthorized {
		msg += "; check client_id, client_secret and scopes"
	}
	body := re.Body
	if len(body) > webapi.MaxBody {
		body = body[:webapi.MaxBody]
	}
	err := error(&tokenStatusError{status: status, body: []byte(ts.redact(string(body), "")), err: errors.New(ts.redact(msg, ""))})
	if webapi.Transient(status) || status == http.StatusTooManyRequests {
		return webapi.RetryAfter(header, err)
	}
	return connector.Permanent(err)
}
