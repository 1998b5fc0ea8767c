package slack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

var (
	postWebhookSpec = connector.ActionSpec{
		Name:    "post_webhook",
		Doc:     "Posts a message through the incoming webhook (needs webhook_url).",
		Outputs: "{ok: true}",
		Writes:  "", // a message, not an entity with a system of record
		Inputs: []connector.Input{
			{Name: "text", Type: connector.TypeString, Doc: "The message text (mrkdwn); the notification fallback when blocks are set. text or blocks is required."},
			{Name: "blocks", Type: connector.TypeList, Doc: "Block Kit blocks: an array, passed through as given."},
		},
	}
	postMessageSpec = connector.ActionSpec{
		Name:    "post_message",
		Doc:     "Posts a message with chat.postMessage (needs bot_token).",
		Outputs: "Slack's answer {ok, channel, ts, message}; ts identifies the message",
		Writes:  "", // a message, not an entity with a system of record
		Inputs: []connector.Input{
			{Name: "channel", Required: true, Type: connector.TypeString, Doc: "Channel id (C…), user id for a DM, or #name."},
			{Name: "text", Type: connector.TypeString, Doc: "The message text (mrkdwn); the notification fallback when blocks are set. text or blocks is required."},
			{Name: "blocks", Type: connector.TypeList, Doc: "Block Kit blocks: an array, passed through as given."},
			// thread_ts is a string or a number (see timestamp): no
			// InputType names that shape.
			{Name: "thread_ts", Type: connector.TypeAny, Doc: "The ts of the parent message, to reply in its thread."},
		},
	}
)

const (
	// defaultRateLimitWait is the wait after a rate limit without
	// Retry-After. Slack sends the header with every 429; this is a guard.
	defaultRateLimitWait = time.Second
	contentTypeJSON      = "application/json; charset=utf-8"
)

// message is the JSON both endpoints take. Blocks stay as given.
type message struct {
	Channel  string `json:"channel,omitempty"`
	Text     string `json:"text,omitempty"`
	Blocks   []any  `json:"blocks,omitempty"`
	ThreadTS string `json:"thread_ts,omitempty"`
}

// postWebhook is the post_webhook action of one system.
type postWebhook struct {
	sys *system
}

// Do posts to the incoming webhook. Slack answers 200 "ok", or a 4xx whose
// body is the error ("invalid_payload", "no_text", "channel_is_archived"):
// permanent. 429 waits for Retry-After; 408, 425 and 5xx are transient.
func (a *postWebhook) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	msg, err := parseMessage(req.Input, postWebhookSpec)
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	const display = "POST webhook" // never the URL: it is the secret
	res, h, _, err := a.sys.post(ctx, display, a.sys.webhookURL, "", msg, req.IdempotencyKey)
	if err != nil {
		return res, err
	}
	if res.Status >= 200 && res.Status < 300 {
		res.Output = map[string]any{"ok": true}
		return res, nil
	}
	return res, a.sys.statusError(display, res, h, strings.TrimSpace(string(res.Body)))
}

// postMessage is the post_message action of one system.
type postMessage struct {
	sys *system
}

// Do calls chat.postMessage. Slack reports most failures as HTTP 200 with
// {"ok": false, "error": "…"}: "ratelimited" waits, Slack's own failures
// (internal_error, fatal_error, service_unavailable, request_timeout) are
// transient, and every other error (channel_not_found, not_in_channel,
// invalid_auth, …) is permanent.
func (a *postMessage) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	msg, err := parseMessage(req.Input, postMessageSpec)
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	const display = "POST chat.postMessage"
	res, h, truncated, err := a.sys.post(ctx, display, a.sys.postMessageURL, a.sys.auth, msg, req.IdempotencyKey)
	if err != nil {
		return res, err
	}
	var answer struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	jsonErr := json.Unmarshal(res.Body, &answer)
	if res.Status < 200 || res.Status >= 300 {
		return res, a.sys.statusError(display, res, h, cmp.Or(answer.Error, strings.TrimSpace(string(res.Body))))
	}
	if truncated {
		// A 2xx too long to keep: Slack's answer echoes the message, and
		// a long one (or one with many escaped characters) passes the
		// limit. Its errors are short, so the post happened: it succeeds
		// with no output, as it would be posted again on a retry.
		return res, nil
	}
	if jsonErr != nil {
		// The post may have happened; retrying could post twice, but an
		// unreadable 2xx is what a proxy's error page looks like.
		return res, fmt.Errorf("%s: %d: answer is not JSON: %s", display, res.Status, webapi.OneLine(a.sys.redact(string(res.Body))))
	}
	if answer.OK {
		res.Output, _ = webapi.DecodeJSON(res.Body)
		return res, nil
	}
	err = errors.New(a.sys.redact(display + ": " + cmp.Or(answer.Error, "ok is false")))
	switch answer.Error {
	case "ratelimited":
		return res, connector.RetryAfter(retryAfter(h), err)
	case "internal_error", "fatal_error", "service_unavailable", "request_timeout":
		return res, err
	}
	return res, connector.Permanent(err)
}

func parseMessage(in map[string]any, spec connector.ActionSpec) (message, error) {
	var accepted []string
	for _, inp := range spec.Inputs {
		accepted = append(accepted, inp.Name)
	}
	var msg message
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		var err error
		switch k {
		case "channel":
			msg.Channel, err = webapi.OptionalString(v)
		case "text":
			msg.Text, err = webapi.OptionalString(v)
		case "thread_ts":
			msg.ThreadTS, err = timestamp(v)
		case "blocks":
			switch b := v.(type) {
			case nil:
			case []any:
				msg.Blocks = b
			default:
				err = fmt.Errorf("want an array of Block Kit blocks, got %s", webapi.TypeName(v))
			}
		}
		if !slices.Contains(accepted, k) {
			err = fmt.Errorf("unknown input (accepted: %s)", strings.Join(accepted, ", "))
		}
		if err != nil {
			return message{}, fmt.Errorf("input %q: %w", k, err)
		}
	}
	switch {
	case slices.ContainsFunc(spec.Inputs, func(i connector.Input) bool { return i.Name == "channel" }) && msg.Channel == "":
		return message{}, errors.New(`input "channel": required`)
	case msg.Text == "" && len(msg.Blocks) == 0:
		return message{}, errors.New(`input "text": required unless blocks are set`)
	}
	return msg, nil
}

// timestamp reads a message ts ("1503435956.000247"). jq yields it as a
// number when the source sent one; json.Number keeps its digits.
func timestamp(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case float64:
		return strconv.FormatFloat(v, 'f', 6, 64), nil
	case int: // a jq integer literal or arithmetic result
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return "", fmt.Errorf("want a string, got %s", webapi.TypeName(v))
}

// post sends msg as JSON and reads the answer, and reports whether the
// answer was cut at webapi.MaxBody. Its error is set only when no answer
// came (transient).
func (s *system) post(ctx context.Context, display, target, auth string, msg message, idempotencyKey string) (connector.Result, http.Header, bool, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return connector.Result{}, nil, false, connector.Permanent(fmt.Errorf("%s: encode body: %w", display, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))))
	if err != nil {
		return connector.Result{}, nil, false, connector.Permanent(errors.New(s.redact(display + ": build request: " + err.Error())))
	}
	req.Header.Set("Content-Type", contentTypeJSON)
	req.Header.Set("User-Agent", "switchboard")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	// Slack does not deduplicate on it; sending it costs nothing.
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return connector.Result{}, nil, false, webapi.TransportError(ctx, s.redactor, display, err)
	}
	res, truncated, err := webapi.ReadResponse(resp)
	if err != nil {
		return res, resp.Header, false, webapi.TransportError(ctx, s.redactor, display+": read response", err)
	}
	return res, resp.Header, truncated, nil
}

// statusError classifies a non-2xx answer whose error text is detail.
func (s *system) statusError(display string, res connector.Result, h http.Header, detail string) error {
	msg := webapi.StatusMessage(display, res.Status)
	if detail != "" {
		msg += ": " + webapi.OneLine(s.redact(detail))
	}
	err := errors.New(s.redact(msg))
	switch {
	case res.Status == http.StatusTooManyRequests:
		return connector.RetryAfter(retryAfter(h), err)
	case webapi.Transient(res.Status):
		return webapi.RetryAfter(h, err)
	}
	return connector.Permanent(err)
}

func retryAfter(h http.Header) time.Duration {
	if d, ok := webapi.ParseRetryAfter(h.Get("Retry-After"), time.Now()); ok {
		return d
	}
	return defaultRateLimitWait
}
