package email_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/email"
)

const apiKey = "SG.s3cr3t-api-K3y"

func emailKind(t testing.TB) *connector.Kind {
	t.Helper()
	r := connector.NewRegistry()
	email.Register(r)
	k, ok := r.Kind("email")
	require.True(t, ok)
	return k
}

func sendMail(t testing.TB, sys connector.System, in map[string]any) (connector.Result, error) {
	t.Helper()
	act, ok := sys.Action("send")
	require.True(t, ok)
	return act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "sb_key1"})
}

func openSendGrid(t testing.TB, baseURL string) connector.System {
	t.Helper()
	cfg := &email.Config{
		Transport: "sendgrid",
		SendGrid:  &email.SendGridConfig{APIKey: apiKey, BaseURL: baseURL},
		From:      "Acme Plumbing <office@acme.example>",
	}
	sys, err := emailKind(t).Open(connector.OpenParams{Name: "mail", Config: cfg})
	require.NoError(t, err)
	return sys
}

func TestRegister(t *testing.T) {
	t.Parallel()

	k := emailKind(t)
	require.IsType(t, &email.Config{}, k.NewConfig())
	spec, ok := k.Action("send")
	require.True(t, ok)
	var required []string
	for _, in := range spec.Inputs {
		if in.Required {
			required = append(required, in.Name)
		}
	}
	require.Equal(t, []string{"to", "subject"}, required)
	_, ok = openSendGrid(t, "").Action("send_later")
	require.False(t, ok)
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()

	no, yes := false, true
	smtpCfg := func(mutate func(*email.SMTPConfig)) *email.SMTPConfig {
		c := &email.SMTPConfig{Host: "smtp.example.com", Username: "u", Password: "p4ss"}
		if mutate != nil {
			mutate(c)
		}
		return c
	}
	tests := []struct {
		name    string
		cfg     email.Config
		wantErr string // empty: valid
	}{
		{"smtp defaults", email.Config{Transport: "smtp", SMTP: smtpCfg(nil)}, ""},
		{"smtp without auth", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{Host: "10.0.0.5"}}, ""},
		{"smtp ipv6 host", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{Host: "::1"}}, ""},
		{"implicit tls", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.Port = 465 })}, ""},
		{"implicit tls, starttls false", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.Port = 465; c.StartTLS = &no })}, ""},
		{"plaintext", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.InsecurePlaintext = true; c.Port = 25 })}, ""},
		{"sendgrid", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey}, From: "a@b.example", ReplyTo: "Desk <d@b.example>"}, ""},

		{"transport missing", email.Config{}, `transport: required ("smtp" or "sendgrid")`},
		{"transport unknown", email.Config{Transport: "ses"}, `transport: want "smtp" or "sendgrid", got "ses"`},
		{"smtp block missing", email.Config{Transport: "smtp"}, "smtp: required with transport: smtp"},
		{"both blocks", email.Config{Transport: "smtp", SMTP: smtpCfg(nil), SendGrid: &email.SendGridConfig{APIKey: apiKey}}, "sendgrid: set only with transport: sendgrid"},
		{"sendgrid block missing", email.Config{Transport: "sendgrid", SMTP: smtpCfg(nil)}, "sendgrid: required with transport: sendgrid"},
		{"host missing", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{}}, "smtp.host: required"},
		{"host with port", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{Host: "smtp.example.com:587"}}, "smtp.host: want a host name or IP address"},
		{"bad port", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.Port = 70000 })}, "smtp.port: want 1 to 65535"},
		{"password without username", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{Host: "h", Password: "p4ss"}}, "smtp.username: required with smtp.password"},
		{"username without password", email.Config{Transport: "smtp", SMTP: &email.SMTPConfig{Host: "h", Username: "u"}}, "smtp.password: required with smtp.username"},
		{"starttls off", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.StartTLS = &no })},
			"smtp.starttls: may be false only with port 465 (implicit TLS) or insecure_plaintext: true"},
		{"starttls on 465", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.Port = 465; c.StartTLS = &yes })}, "smtp.starttls: port 465 uses implicit TLS"},
		{"plaintext and starttls", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.InsecurePlaintext = true; c.StartTLS = &yes })},
			"smtp.starttls: conflicts with insecure_plaintext"},
		{"plaintext on 465", email.Config{Transport: "smtp", SMTP: smtpCfg(func(c *email.SMTPConfig) { c.InsecurePlaintext = true; c.Port = 465 })}, "smtp.insecure_plaintext: port 465 is implicit TLS"},
		{"api_key missing", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{}}, "sendgrid.api_key: required"},
		{"api_key newline", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey + "\n"}}, "sendgrid.api_key: must not contain control characters"},
		{"bad base_url", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey, BaseURL: "api.sendgrid.com"}}, "sendgrid.base_url: must be an absolute http or https URL"},
		{"bad from", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey}, From: "office at acme"}, `from: "office at acme" is not an e-mail address`},
		{"bad reply_to", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey}, ReplyTo: "x@"}, `reply_to: "x@" is not an e-mail address`},
		{"negative timeout", email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey}, Timeout: -time.Second}, "timeout: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := emailKind(t).Open(connector.OpenParams{Name: "mail", Config: &tt.cfg})
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), apiKey)
			require.NotContains(t, err.Error(), "p4ss")
		})
	}
}

func TestInputErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		noFrom  bool
		input   map[string]any
		wantErr string
	}{
		{"to missing", false, map[string]any{"subject": "s", "text": "t"}, `input "to": required`},
		{"to empty list", false, map[string]any{"to": []any{}, "subject": "s", "text": "t"}, `input "to": required`},
		{"to number", false, map[string]any{"to": json.Number("1"), "subject": "s", "text": "t"}, `input "to": want a string or a list of strings, got number`},
		{"to list of objects", false, map[string]any{"to": []any{map[string]any{}}, "subject": "s", "text": "t"}, `input "to": want a string or a list of strings, got a list holding object`},
		{"to invalid", false, map[string]any{"to": "ann at example", "subject": "s", "text": "t"}, `input "to": "ann at example" is not an e-mail address`},
		{"cc invalid", false, map[string]any{"to": "a@b.example", "cc": "nope", "subject": "s", "text": "t"}, `input "cc": "nope" is not`},
		{"bcc bool", false, map[string]any{"to": "a@b.example", "bcc": true, "subject": "s", "text": "t"}, `input "bcc": want a string or a list of strings, got bool`},
		{"subject missing", false, map[string]any{"to": "a@b.example", "text": "t"}, `input "subject": required`},
		{"subject line break", false, map[string]any{"to": "a@b.example", "subject": "s\r\nBcc: x@evil.example", "text": "t"}, `input "subject": must not contain line breaks`},
		{"no body", false, map[string]any{"to": "a@b.example", "subject": "s"}, `input "text": required unless html is set`},
		{"html number", false, map[string]any{"to": "a@b.example", "subject": "s", "html": 1.0}, `input "html": want a string, got number`},
		{"from invalid", false, map[string]any{"to": "a@b.example", "subject": "s", "text": "t", "from": "x"}, `input "from": "x" is not an e-mail address`},
		{"no from anywhere", true, map[string]any{"to": "a@b.example", "subject": "s", "text": "t"}, `input "from": required, since the system sets no from`},
		{"unknown input", false, map[string]any{"to": "a@b.example", "subject": "s", "text": "t", "attachments": []any{}}, `input "attachments": unknown input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			cfg := &email.Config{Transport: "sendgrid", SendGrid: &email.SendGridConfig{APIKey: apiKey, BaseURL: up.URL}}
			if !tt.noFrom {
				cfg.From = "office@acme.example"
			}
			sys, err := emailKind(t).Open(connector.OpenParams{Name: "mail", Config: cfg})
			require.NoError(t, err)
			_, err = sendMail(t, sys, tt.input)
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.ErrorContains(t, err, tt.wantErr)
			require.Zero(t, up.Count())
		})
	}
}

func TestSendGridRequest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		input    map[string]any
		wantBody string
	}{
		{
			name: "everything",
			input: map[string]any{
				"to": "Ann <ann@example.com>, bob@example.com", "cc": []any{"carol@example.com"}, "bcc": "audit@acme.example",
				"reply_to": "desk@acme.example", "subject": "Your quote", "text": "Hello", "html": "<p>Hello</p>",
			},
			wantBody: `{
				"personalizations":[{
					"to":[{"email":"ann@example.com","name":"Ann"},{"email":"bob@example.com"}],
					"cc":[{"email":"carol@example.com"}],
					"bcc":[{"email":"audit@acme.example"}],
					"custom_args":{"idempotency_key":"sb_key1"}
				}],
				"from":{"email":"office@acme.example","name":"Acme Plumbing"},
				"reply_to":{"email":"desk@acme.example"},
				"subject":"Your quote",
				"content":[{"type":"text/plain","value":"Hello"},{"type":"text/html","value":"<p>Hello</p>"}]
			}`,
		},
		{
			name:  "html only, step's from",
			input: map[string]any{"to": "ann@example.com", "subject": "Hi", "html": "<p>Hi & bye</p>", "from": "sales@acme.example"},
			wantBody: `{
				"personalizations":[{"to":[{"email":"ann@example.com"}],"custom_args":{"idempotency_key":"sb_key1"}}],
				"from":{"email":"sales@acme.example"},
				"subject":"Hi",
				"content":[{"type":"text/html","value":"<p>Hi & bye</p>"}]
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-Message-Id", "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0")
				w.WriteHeader(http.StatusAccepted)
			})
			res, err := sendMail(t, openSendGrid(t, up.URL), tt.input)
			require.NoError(t, err)
			require.Equal(t, http.StatusAccepted, res.Status)
			require.Equal(t, map[string]any{"message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}, res.Output)

			got := up.Last(t)
			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, "/v3/mail/send", got.RequestURI)
			require.Equal(t, "Bearer "+apiKey, got.Header.Get("Authorization"))
			require.Equal(t, "application/json", got.Header.Get("Content-Type"))
			require.Equal(t, "sb_key1", got.Header.Get("Idempotency-Key"))
			require.JSONEq(t, tt.wantBody, got.Body)

			connectortest.LoadSpec(t, "sendgrid-mail-v3.json").Check(t, connectortest.SpecRequest{
				Method: got.Method, Path: got.RequestURI, ContentType: got.Header.Get("Content-Type"), Body: got.Body,
			})
		})
	}
}

func TestSendGridErrors(t *testing.T) {
	t.Parallel()

	reset := time.Now().Add(40 * time.Second).Unix()
	tests := []struct {
		name      string
		status    int
		headers   map[string]string
		body      string
		permanent bool
		wantAfter time.Duration // ±2s
		afterOK   bool
		wantErr   string
	}{
		{name: "400", status: 400, permanent: true,
			body:    `{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":"http://x"},{"message":"Invalid subject","field":null}]}`,
			wantErr: "POST /v3/mail/send: 400 Bad Request: from.email: The from email does not contain a valid address.; Invalid subject"},
		{name: "401", status: 401, permanent: true, body: `{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null}]}`,
			wantErr: "POST /v3/mail/send: 401 Unauthorized: The provided authorization grant is invalid, expired, or revoked"},
		{name: "403 unverified sender", status: 403, permanent: true,
			body: `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from"}]}`},
		{name: "413", status: 413, permanent: true, body: `{"errors":[{"message":"too large","field":"null"}]}`, wantErr: "POST /v3/mail/send: 413 Request Entity Too Large: too large"},
		{name: "302", status: 302, permanent: true},
		{name: "429 retry-after", status: 429, headers: map[string]string{"Retry-After": "15"}, wantAfter: 15 * time.Second, afterOK: true},
		{name: "429 rate-limit reset", status: 429, headers: map[string]string{"X-RateLimit-Reset": strconv.FormatInt(reset, 10)},
			wantAfter: 40 * time.Second, afterOK: true},
		{name: "429 no hints", status: 429},
		{name: "500", status: 500, body: `{"errors":[{"message":"internal error"}]}`},
		{name: "503 retry-after", status: 503, headers: map[string]string{"Retry-After": "3"}, wantAfter: 3 * time.Second, afterOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			res, err := sendMail(t, openSendGrid(t, up.URL), map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"})
			require.Error(t, err)
			require.Nil(t, res.Output)
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, tt.permanent, connector.IsPermanent(err), "permanent? %v", err)
			after, hasAfter := connector.RetryAfterOf(err)
			require.Equal(t, tt.afterOK, hasAfter)
			require.InDelta(t, tt.wantAfter, after, float64(2*time.Second))
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
			}
		})
	}
}

func TestSendGridSecretsNotInErrors(t *testing.T) {
	t.Parallel()

	for _, status := range []int{401, 429, 500} {
		up := connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"errors":[{"message":"bad key `+r.Header.Get("Authorization")+`"}]}`)
		})
		_, err := sendMail(t, openSendGrid(t, up.URL), map[string]any{"to": "ann@example.com", "subject": "s", "text": "t"})
		connectortest.NoSecrets(t, err, apiKey)
		require.ErrorContains(t, err, "[redacted]")
	}
}
