package email

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

// sendGrid sends through SendGrid's v3 Mail Send API.
type sendGrid struct {
	url      string // …/v3/mail/send
	auth     string // the Authorization header value
	client   *http.Client
	redactor *strings.Replacer
}

func newSendGrid(c *SendGridConfig, timeout time.Duration) *sendGrid {
	base := strings.TrimSuffix(c.BaseURL, "/")
	if base == "" {
		base = defaultSendGridURL
	}
	return &sendGrid{
		url:      base + "/v3/mail/send",
		auth:     "Bearer " + c.APIKey.Reveal(),
		client:   webapi.NewClient(timeout),
		redactor: strings.NewReplacer(c.APIKey.Reveal(), "[redacted]"),
	}
}

// The Mail Send body (the spec's PostMailSend request body).
type (
	sgMail struct {
		Personalizations []sgPersonalization `json:"personalizations"`
		From             sgAddress           `json:"from"`
		ReplyTo          *sgAddress          `json:"reply_to,omitempty"`
		Subject          string              `json:"subject"`
		Content          []sgContent         `json:"content"`
	}
	sgPersonalization struct {
		To  []sgAddress `json:"to"`
		Cc  []sgAddress `json:"cc,omitempty"`
		Bcc []sgAddress `json:"bcc,omitempty"`
		// CustomArgs carries the idempotency key into SendGrid's event
		// webhook, so delivery events can be matched to the step.
		CustomArgs map[string]string `json:"custom_args,omitempty"`
	}
	sgAddress struct {
		Email string `json:"email"`
		Name  string `json:"name,omitempty"`
	}
	sgContent struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
)

func sgAddresses(list []*mail.Address) []sgAddress {
	out := make([]sgAddress, len(list))
	for i, a := range list {
		out[i] = sgAddress{Email: a.Address, Name: a.Name}
	}
	return out
}

// send posts the message. SendGrid answers 202 with the message's id in
// X-Message-Id. 429 waits for Retry-After or X-RateLimit-Reset; 408, 425
// and 5xx are transient; every other status (400 bad request, 401/403 key
// or sender not allowed, 413 too large, 3xx) is permanent with SendGrid's
// error messages.
func (g *sendGrid) send(ctx context.Context, m *message, idempotencyKey string) (connector.Result, error) {
	const display = "POST /v3/mail/send"
	body := sgMail{
		Personalizations: []sgPersonalization{{To: sgAddresses(m.to), Cc: sgAddresses(m.cc), Bcc: sgAddresses(m.bcc)}},
		From:             sgAddress{Email: m.from.Address, Name: m.from.Name},
		Subject:          m.subject,
	}
	if idempotencyKey != "" {
		body.Personalizations[0].CustomArgs = map[string]string{"idempotency_key": idempotencyKey}
	}
	if m.replyTo != nil {
		body.ReplyTo = &sgAddress{Email: m.replyTo.Address, Name: m.replyTo.Name}
	}
	// SendGrid requires text/plain before text/html.
	if m.text != "" {
		body.Content = append(body.Content, sgContent{Type: "text/plain", Value: m.text})
	}
	if m.html != "" {
		body.Content = append(body.Content, sgContent{Type: "text/html", Value: m.html})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return connector.Result{}, connector.Permanent(fmt.Errorf("%s: encode body: %w", display, err))
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))))
	if err != nil {
		return connector.Result{}, connector.Permanent(fmt.Errorf("%s: build request: %w", display, err))
	}
	req.Header.Set("Authorization", g.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard")
	// SendGrid does not deduplicate on it; the key also rides in
	// custom_args. Sending it costs nothing.
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return connector.Result{}, webapi.TransportError(ctx, g.redactor, display, err)
	}
	res, _, readErr := webapi.ReadResponse(resp)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The body of a 202 is empty; a read error there loses nothing.
		res.Output = map[string]any{"message_id": resp.Header.Get("X-Message-Id")}
		return res, nil
	}
	if readErr != nil {
		return res, webapi.TransportError(ctx, g.redactor, display+": read response", readErr)
	}
	return res, g.statusError(display, resp, res.Body)
}

func (g *sendGrid) statusError(display string, resp *http.Response, body []byte) error {
	msg := webapi.StatusMessage(display, resp.StatusCode)
	var payload struct {
		Errors []struct {
			Message string `json:"message"`
			Field   any    `json:"field"`
		} `json:"errors"`
	}
	var details []string
	if json.Unmarshal(body, &payload) == nil {
		for _, e := range payload.Errors {
			d := e.Message
			if f, ok := e.Field.(string); ok && f != "" && f != "null" {
				d = f + ": " + d
			}
			details = append(details, d)
		}
	}
	if len(details) == 0 && len(body) > 0 {
		details = append(details, string(body))
	}
	if len(details) > 0 {
		msg += ": " + webapi.OneLine(g.redactor.Replace(strings.Join(details, "; ")))
	}
	err := errors.New(g.redactor.Replace(msg))

	now := time.Now()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if d, ok := webapi.ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			return connector.RetryAfter(d, err)
		}
		// X-RateLimit-Reset is the Unix time the limit resets at.
		if reset, perr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("X-RateLimit-Reset")), 10, 64); perr == nil && reset > 0 {
			return connector.RetryAfter(max(time.Unix(reset, 0).Sub(now), 0), err)
		}
		return err
	case webapi.Transient(resp.StatusCode):
		return webapi.RetryAfter(resp.Header, err)
	}
	return connector.Permanent(err)
}
