package slack_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/slack"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

const (
	botToken    = "xoxb-1111-2222-s3cr3tT0ken"
	webhookPath = "/services/T000/B000/s3cr3tHookPath"
)

func slackKind(t testing.TB) *connector.Kind {
	t.Helper()
	r := connector.NewRegistry()
	slack.Register(r)
	k, ok := r.Kind("slack")
	require.True(t, ok)
	return k
}

func openSystem(t testing.TB, cfg slack.Config) connector.System {
	t.Helper()
	sys, err := slackKind(t).Open(connector.OpenParams{Name: "chat", Config: &cfg})
	require.NoError(t, err)
	return sys
}

func do(t testing.TB, sys connector.System, action string, in map[string]any) (connector.Result, error) {
	t.Helper()
	act, ok := sys.Action(action)
	require.True(t, ok, action)
	return act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "sb_key1"})
}

func TestRegister(t *testing.T) {
	t.Parallel()

	k := slackKind(t)
	require.IsType(t, &slack.Config{}, k.NewConfig())
	spec, ok := k.Action("post_message")
	require.True(t, ok)
	require.True(t, spec.Inputs[0].Required)
	require.Equal(t, "channel", spec.Inputs[0].Name)
	_, ok = k.Action("post_webhook")
	require.True(t, ok)
}

func TestActionsFollowConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		cfg         slack.Config
		webhook, pm bool
	}{
		{"webhook only", slack.Config{WebhookURL: "https://hooks.slack.com" + webhookPath}, true, false},
		{"bot only", slack.Config{BotToken: botToken}, false, true},
		{"both", slack.Config{WebhookURL: "https://hooks.slack.com" + webhookPath, BotToken: botToken}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sys := openSystem(t, tt.cfg)
			_, ok := sys.Action("post_webhook")
			require.Equal(t, tt.webhook, ok)
			_, ok = sys.Action("post_message")
			require.Equal(t, tt.pm, ok)
			_, ok = sys.Action("nope")
			require.False(t, ok)
		})
	}
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     slack.Config
		wantErr string
	}{
		{"nothing set", slack.Config{}, "webhook_url or bot_token: required"},
		{"relative webhook", slack.Config{WebhookURL: secret.Value(webhookPath)}, "webhook_url: must be an absolute http or https URL"},
		{"webhook credentials", slack.Config{WebhookURL: secret.Value("https://u:p@hooks.slack.com" + webhookPath)}, "webhook_url: must not contain credentials"},
		{"token newline", slack.Config{BotToken: botToken + "\n"}, "bot_token: must not contain control characters"},
		{"bad base_url", slack.Config{BotToken: botToken, BaseURL: "slack.com/api"}, "base_url: must be an absolute http or https URL"},
		{"negative timeout", slack.Config{BotToken: botToken, Timeout: -time.Second}, "timeout: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := slackKind(t).Open(connector.OpenParams{Name: "chat", Config: &tt.cfg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), botToken)
			require.NotContains(t, err.Error(), webhookPath)
		})
	}
}

func TestPostWebhook(t *testing.T) {
	t.Parallel()

	blocks := []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*New lead* Ann"}}}
	tests := []struct {
		name     string
		input    map[string]any
		wantBody string
	}{
		{"text", map[string]any{"text": "New lead: Ann <ann@example.com>"}, `{"text":"New lead: Ann <ann@example.com>"}`},
		{"blocks", map[string]any{"text": "New lead", "blocks": blocks},
			`{"text":"New lead","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*New lead* Ann"}}]}`},
		{"blocks alone", map[string]any{"blocks": blocks, "text": nil},
			`{"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*New lead* Ann"}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, "ok")
			})
			sys := openSystem(t, slack.Config{WebhookURL: secret.Value(up.URL + webhookPath)})
			res, err := do(t, sys, "post_webhook", tt.input)
			require.NoError(t, err)
			require.Equal(t, map[string]any{"ok": true}, res.Output)
			require.Equal(t, "ok", string(res.Body))

			got := up.Last(t)
			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, webhookPath, got.RequestURI)
			require.Equal(t, "application/json; charset=utf-8", got.Header.Get("Content-Type"))
			require.Empty(t, got.Header.Get("Authorization"))
			require.Equal(t, "sb_key1", got.Header.Get("Idempotency-Key"))
			require.JSONEq(t, tt.wantBody, got.Body)
		})
	}
}

func TestPostMessage(t *testing.T) {
	t.Parallel()

	answer := `{"ok":true,"channel":"C123","ts":"1503435956.000247","message":{"text":"hi","ts":"1503435956.000247"}}`
	tests := []struct {
		name     string
		input    map[string]any
		wantBody string
	}{
		{"text", map[string]any{"channel": "C123", "text": "hi"}, `{"channel":"C123","text":"hi"}`},
		{"thread reply", map[string]any{"channel": "C123", "text": "hi", "thread_ts": "1503435956.000247"},
			`{"channel":"C123","text":"hi","thread_ts":"1503435956.000247"}`},
		{"thread ts as number", map[string]any{"channel": "C123", "text": "hi", "thread_ts": json.Number("1503435956.000247")},
			`{"channel":"C123","text":"hi","thread_ts":"1503435956.000247"}`},
		{"blocks", map[string]any{"channel": "#ops", "blocks": []any{map[string]any{"type": "divider"}}},
			`{"channel":"#ops","blocks":[{"type":"divider"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusOK, answer))
			sys := openSystem(t, slack.Config{BotToken: botToken, BaseURL: up.URL + "/api/"})
			res, err := do(t, sys, "post_message", tt.input)
			require.NoError(t, err)
			out, ok := res.Output.(map[string]any)
			require.True(t, ok)
			require.Equal(t, "1503435956.000247", out["ts"])
			require.Equal(t, true, out["ok"])

			got := up.Last(t)
			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, "/api/chat.postMessage", got.RequestURI)
			require.Equal(t, "Bearer "+botToken, got.Header.Get("Authorization"))
			require.Equal(t, "application/json; charset=utf-8", got.Header.Get("Content-Type"))
			require.Equal(t, "sb_key1", got.Header.Get("Idempotency-Key"))
			require.JSONEq(t, tt.wantBody, got.Body)
		})
	}
}

// TestPostMessageLongAnswer: Slack's answer echoes the message; one past
// the kept size is a post that happened, so it succeeds (with no output)
// rather than failing as "not JSON" and being posted again on each retry.
func TestPostMessageLongAnswer(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 70<<10)
	answer := `{"ok":true,"channel":"C123","ts":"1503435956.000247","message":{"text":"` + long + `"}}`
	up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusOK, answer))
	sys := openSystem(t, slack.Config{BotToken: botToken, BaseURL: up.URL + "/api/"})
	res, err := do(t, sys, "post_message", map[string]any{"channel": "C123", "text": long})
	require.NoError(t, err)
	require.Nil(t, res.Output)
	require.Equal(t, http.StatusOK, res.Status)
}

func TestInputErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		action  string
		input   map[string]any
		wantErr string
	}{
		{"webhook empty", "post_webhook", map[string]any{}, `input "text": required unless blocks are set`},
		{"webhook channel", "post_webhook", map[string]any{"text": "x", "channel": "C1"}, `input "channel": unknown input (accepted: text, blocks)`},
		{"blocks object", "post_webhook", map[string]any{"blocks": map[string]any{}}, `input "blocks": want an array of Block Kit blocks, got object`},
		{"text number", "post_message", map[string]any{"channel": "C1", "text": 1.0}, `input "text": want a string, got number`},
		{"channel missing", "post_message", map[string]any{"text": "x"}, `input "channel": required`},
		{"message empty", "post_message", map[string]any{"channel": "C1", "blocks": []any{}}, `input "text": required unless blocks are set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			sys := openSystem(t, slack.Config{WebhookURL: secret.Value(up.URL + webhookPath), BotToken: botToken, BaseURL: up.URL})
			_, err := do(t, sys, tt.action, tt.input)
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.ErrorContains(t, err, tt.wantErr)
			require.Zero(t, up.Count())
		})
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()

	const (
		ok = iota
		transient
		permanent
	)
	tests := []struct {
		name       string
		action     string
		status     int
		retryAfter string
		body       string
		want       int
		wantAfter  time.Duration
		afterOK    bool
		wantErr    string
	}{
		{name: "webhook invalid_payload", action: "post_webhook", status: 400, body: "invalid_payload", want: permanent,
			wantErr: "POST webhook: 400 Bad Request: invalid_payload"},
		{name: "webhook no_text", action: "post_webhook", status: 400, body: "no_text", want: permanent},
		{name: "webhook channel_is_archived", action: "post_webhook", status: 410, body: "channel_is_archived", want: permanent},
		{name: "webhook no_service", action: "post_webhook", status: 404, body: "no_service", want: permanent},
		{name: "webhook redirect", action: "post_webhook", status: 302, want: permanent},
		{name: "webhook 429", action: "post_webhook", status: 429, retryAfter: "30", body: "rate_limited", want: transient, wantAfter: 30 * time.Second, afterOK: true},
		{name: "webhook 429 no header", action: "post_webhook", status: 429, want: transient, wantAfter: time.Second, afterOK: true},
		{name: "webhook 500", action: "post_webhook", status: 500, body: "rollup_error", want: transient},
		{name: "webhook 503 retry-after", action: "post_webhook", status: 503, retryAfter: "4", want: transient, wantAfter: 4 * time.Second, afterOK: true},
		{name: "channel_not_found", action: "post_message", status: 200, body: `{"ok":false,"error":"channel_not_found"}`, want: permanent,
			wantErr: "POST chat.postMessage: channel_not_found"},
		{name: "not_in_channel", action: "post_message", status: 200, body: `{"ok":false,"error":"not_in_channel"}`, want: permanent},
		{name: "invalid_auth", action: "post_message", status: 200, body: `{"ok":false,"error":"invalid_auth"}`, want: permanent},
		{name: "ratelimited in body", action: "post_message", status: 200, body: `{"ok":false,"error":"ratelimited"}`, want: transient, wantAfter: time.Second, afterOK: true},
		{name: "429 ratelimited", action: "post_message", status: 429, retryAfter: "12", body: `{"ok":false,"error":"ratelimited"}`, want: transient,
			wantAfter: 12 * time.Second, afterOK: true, wantErr: "POST chat.postMessage: 429 Too Many Requests: ratelimited"},
		{name: "internal_error", action: "post_message", status: 200, body: `{"ok":false,"error":"internal_error"}`, want: transient},
		{name: "post_message 502", action: "post_message", status: 502, body: "<html>", want: transient},
		{name: "post_message 200 not JSON", action: "post_message", status: 200, body: "<html>proxy</html>", want: transient},
		{name: "post_message ok with warning", action: "post_message", status: 200, body: `{"ok":true,"ts":"1.2","warning":"missing_charset"}`, want: ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			sys := openSystem(t, slack.Config{WebhookURL: secret.Value(up.URL + webhookPath), BotToken: botToken, BaseURL: up.URL})
			input := map[string]any{"text": "hi"}
			if tt.action == "post_message" {
				input["channel"] = "C1"
			}
			res, err := do(t, sys, tt.action, input)
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, tt.body, string(res.Body))
			switch tt.want {
			case ok:
				require.NoError(t, err)
				require.NotNil(t, res.Output)
				return
			case transient:
				require.Error(t, err)
				require.False(t, connector.IsPermanent(err), "want transient, got permanent %v", err)
			case permanent:
				require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			}
			require.Nil(t, res.Output)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
			}
			after, hasAfter := connector.RetryAfterOf(err)
			require.Equal(t, tt.afterOK, hasAfter)
			require.Equal(t, tt.wantAfter, after)
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()

	// echo answers with what it got, as a misbehaving proxy might.
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"ok":false,"error":"bad `+r.Header.Get("Authorization")+" "+r.RequestURI+`"}`)
		}
	}
	for _, status := range []int{200, 400, 429, 500} {
		up := connectortest.NewUpstream(t, echo(status))
		sys := openSystem(t, slack.Config{WebhookURL: secret.Value(up.URL + webhookPath), BotToken: botToken, BaseURL: up.URL})
		_, err := do(t, sys, "post_message", map[string]any{"channel": "C1", "text": "x"})
		connectortest.NoSecrets(t, err, botToken)
		if status != http.StatusOK { // a 200 from the webhook is success
			_, err = do(t, sys, "post_webhook", map[string]any{"text": "x"})
			connectortest.NoSecrets(t, err, webhookPath)
		}
	}

	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	sys := openSystem(t, slack.Config{WebhookURL: secret.Value(refused.URL + webhookPath)})
	_, err := do(t, sys, "post_webhook", map[string]any{"text": "x"})
	require.False(t, connector.IsPermanent(err))
	connectortest.NoSecrets(t, err, webhookPath, refused.URL)
}
