package twilio_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/twilio"
)

const (
	sid        = "AC0123456789abcdef0123456789abcdef"
	serviceSID = "MG0123456789abcdef0123456789abcdef"
	token      = "s3cr3t-auth-T0ken"
	messages   = "/2010-04-01/Accounts/" + sid + "/Messages.json"
	created    = `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","to":"+15550100","num_segments":"1","price":null}`
)

func twilioKind(t testing.TB) *connector.Kind {
	t.Helper()
	r := connector.NewRegistry()
	twilio.Register(r)
	k, ok := r.Kind("twilio")
	require.True(t, ok)
	return k
}

func openSystem(t testing.TB, cfg twilio.Config) connector.System {
	t.Helper()
	cfg.AccountSID, cfg.AuthToken = sid, token
	sys, err := twilioKind(t).Open(connector.OpenParams{Name: "sms", Config: &cfg})
	require.NoError(t, err)
	return sys
}

func send(t testing.TB, sys connector.System, in map[string]any) (connector.Result, error) {
	t.Helper()
	act, ok := sys.Action("send_sms")
	require.True(t, ok)
	return act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "sb_key1"})
}

func TestRegister(t *testing.T) {
	t.Parallel()

	k := twilioKind(t)
	require.IsType(t, &twilio.Config{}, k.NewConfig())
	spec, ok := k.Action("send_sms")
	require.True(t, ok)
	var required []string
	for _, in := range spec.Inputs {
		if in.Required {
			required = append(required, in.Name)
		}
	}
	require.Equal(t, []string{"to", "body"}, required)

	sys := openSystem(t, twilio.Config{From: "+15550199"})
	_, ok = sys.Action("send_mms")
	require.False(t, ok)
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     twilio.Config
		wantErr string
	}{
		{"missing account_sid", twilio.Config{AuthToken: token}, "account_sid: required"},
		{"bad account_sid", twilio.Config{AccountSID: "AC123", AuthToken: token}, `account_sid: want "AC" followed by 32 hex digits`},
		{"missing auth_token", twilio.Config{AccountSID: sid}, "auth_token: required"},
		{"auth_token newline", twilio.Config{AccountSID: sid, AuthToken: token + "\r"}, "auth_token: must not contain control characters"},
		{"bad base_url", twilio.Config{AccountSID: sid, AuthToken: token, BaseURL: "api.twilio.com"}, "base_url: must be an absolute http or https URL"},
		{"base_url credentials", twilio.Config{AccountSID: sid, AuthToken: token, BaseURL: "https://" + sid + ":" + token + "@api.twilio.com"}, "base_url: must not contain credentials"},
		{"bad messaging_service_sid", twilio.Config{AccountSID: sid, AuthToken: token, MessagingServiceSID: "MG1"}, "messaging_service_sid: want"},
		{"bad status_callback", twilio.Config{AccountSID: sid, AuthToken: token, StatusCallback: "/cb"}, "status_callback: must be an absolute http or https URL"},
		{"negative timeout", twilio.Config{AccountSID: sid, AuthToken: token, Timeout: -time.Second}, "timeout: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := twilioKind(t).Open(connector.OpenParams{Name: "sms", Config: &tt.cfg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), token)
		})
	}
}

func TestSendRequest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		cfg      twilio.Config
		input    map[string]any
		wantForm url.Values
	}{
		{
			name:     "system defaults",
			cfg:      twilio.Config{From: "+15550199", StatusCallback: "https://hooks.example.com/twilio"},
			input:    map[string]any{"to": "+15550100", "body": "Thanks Ann — we will call you today."},
			wantForm: url.Values{"To": {"+15550100"}, "From": {"+15550199"}, "Body": {"Thanks Ann — we will call you today."}, "StatusCallback": {"https://hooks.example.com/twilio"}},
		},
		{
			name: "step overrides",
			cfg:  twilio.Config{From: "+15550199", StatusCallback: "https://hooks.example.com/twilio"},
			input: map[string]any{"to": "+15550100", "body": "hi", "from": "ACME",
				"status_callback": "https://hooks.example.com/other", "messaging_service_sid": serviceSID},
			wantForm: url.Values{"To": {"+15550100"}, "From": {"ACME"}, "Body": {"hi"},
				"StatusCallback": {"https://hooks.example.com/other"}, "MessagingServiceSid": {serviceSID}},
		},
		{
			name:     "messaging service only",
			cfg:      twilio.Config{MessagingServiceSID: serviceSID},
			input:    map[string]any{"to": "+15550100", "body": "hi", "from": nil},
			wantForm: url.Values{"To": {"+15550100"}, "Body": {"hi"}, "MessagingServiceSid": {serviceSID}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusCreated, created))
			tt.cfg.BaseURL = up.URL
			res, err := send(t, openSystem(t, tt.cfg), tt.input)
			require.NoError(t, err)
			require.Equal(t, http.StatusCreated, res.Status)
			require.Equal(t, map[string]any{
				"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": "+15550100", "num_segments": "1", "price": nil,
			}, res.Output)

			got := up.Last(t)
			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, messages, got.RequestURI)
			require.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte(sid+":"+token)), got.Header.Get("Authorization"))
			require.Equal(t, "application/x-www-form-urlencoded", got.Header.Get("Content-Type"))
			require.Equal(t, "sb_key1", got.Header.Get("Idempotency-Key"))
			form, err := url.ParseQuery(got.Body)
			require.NoError(t, err)
			require.Equal(t, tt.wantForm, form)

			connectortest.LoadSpec(t, "twilio_api_v2010.json").Check(t, connectortest.SpecRequest{
				Method: got.Method, Path: got.RequestURI, ContentType: got.Header.Get("Content-Type"), Body: got.Body,
			})
		})
	}
}

func TestInputErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     twilio.Config
		input   map[string]any
		wantErr string
	}{
		{"to missing", twilio.Config{From: "+1"}, map[string]any{"body": "x"}, `input "to": required`},
		{"to number", twilio.Config{From: "+1"}, map[string]any{"to": json.Number("15550100"), "body": "x"}, `input "to": want a string, got number`},
		{"body blank", twilio.Config{From: "+1"}, map[string]any{"to": "+1", "body": "  "}, `input "body": required`},
		{"body object", twilio.Config{From: "+1"}, map[string]any{"to": "+1", "body": map[string]any{}}, `input "body": want a string, got object`},
		{"no sender", twilio.Config{}, map[string]any{"to": "+1", "body": "x"}, `input "from": required, since the system sets neither from nor messaging_service_sid`},
		{"bad service sid", twilio.Config{From: "+1"}, map[string]any{"to": "+1", "body": "x", "messaging_service_sid": "MGx"}, `input "messaging_service_sid": want`},
		{"bad callback", twilio.Config{From: "+1"}, map[string]any{"to": "+1", "body": "x", "status_callback": "ftp://x"}, `input "status_callback": must be an absolute`},
		{"unknown input", twilio.Config{From: "+1"}, map[string]any{"to": "+1", "body": "x", "media_url": "https://x"}, `input "media_url": unknown input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			tt.cfg.BaseURL = up.URL
			_, err := send(t, openSystem(t, tt.cfg), tt.input)
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.ErrorContains(t, err, tt.wantErr)
			require.Zero(t, up.Count())
		})
	}
}

func twilioError(code int, message string, status int) string {
	b, _ := json.Marshal(map[string]any{"code": code, "message": message, "more_info": "https://www.twilio.com/docs/errors/x", "status": status})
	return string(b)
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()

	const (
		transient = iota
		permanent
	)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		want       int
		wantAfter  time.Duration
		afterOK    bool
		wantCode   int
		wantErr    string
	}{
		{name: "21211 invalid To", status: 400, body: twilioError(21211, "The 'To' number +1555 is not a valid phone number.", 400), want: permanent, wantCode: 21211,
			wantErr: "POST " + messages + ": 400 Bad Request: twilio error 21211 (invalid To number): The 'To' number +1555 is not a valid phone number."},
		{name: "21610 unsubscribed", status: 400, body: twilioError(21610, "Attempt to send to unsubscribed recipient", 400), want: permanent, wantCode: 21610,
			wantErr: "twilio error 21610 (recipient unsubscribed: replied STOP)"},
		{name: "21614 not mobile", status: 400, body: twilioError(21614, "'To' number is not a valid mobile number", 400), want: permanent, wantCode: 21614},
		{name: "21408 region", status: 400, body: twilioError(21408, "Permission to send an SMS has not been enabled for the region", 400), want: permanent, wantCode: 21408},
		{name: "21606 From", status: 400, body: twilioError(21606, "The From phone number is not a valid, SMS-capable inbound phone number", 400), want: permanent, wantCode: 21606},
		{name: "20003 auth", status: 401, body: twilioError(20003, "Authenticate", 401), want: permanent, wantCode: 20003},
		{name: "unknown code", status: 400, body: twilioError(29999, "Something new", 400), want: permanent, wantCode: 29999, wantErr: "twilio error 29999: Something new"},
		{name: "400 not JSON", status: 400, body: "bad request", want: permanent, wantErr: "400 Bad Request: bad request"},
		{name: "302", status: 302, want: permanent},
		{name: "429 default wait", status: 429, body: twilioError(20429, "Too Many Requests", 429), want: transient, wantAfter: time.Second, afterOK: true, wantCode: 20429},
		{name: "429 retry-after", status: 429, retryAfter: "5", body: twilioError(20429, "Too Many Requests", 429), want: transient, wantAfter: 5 * time.Second, afterOK: true, wantCode: 20429},
		{name: "20429 under another status", status: 400, body: twilioError(20429, "Too Many Requests", 400), want: transient, wantAfter: time.Second, afterOK: true, wantCode: 20429},
		{name: "14107 rate limit", status: 400, body: twilioError(14107, "SMS send rate limit exceeded", 400), want: transient, wantAfter: time.Second, afterOK: true, wantCode: 14107},
		{name: "408", status: 408, want: transient},
		{name: "500", status: 500, body: twilioError(20500, "Internal Server Error", 500), want: transient, wantCode: 20500},
		{name: "503 retry-after", status: 503, retryAfter: "9", want: transient, wantAfter: 9 * time.Second, afterOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			res, err := send(t, openSystem(t, twilio.Config{BaseURL: up.URL, From: "+15550199"}), map[string]any{"to": "+15550100", "body": "hi"})
			require.Error(t, err)
			require.Equal(t, tt.status, res.Status)
			require.Nil(t, res.Output)
			require.Equal(t, tt.want == permanent, connector.IsPermanent(err), "permanent? %v", err)
			after, hasAfter := connector.RetryAfterOf(err)
			require.Equal(t, tt.afterOK, hasAfter)
			require.Equal(t, tt.wantAfter, after)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
			}
			var apiErr *twilio.Error
			require.True(t, errors.As(err, &apiErr))
			require.Equal(t, tt.wantCode, apiErr.Code)
			require.Equal(t, tt.status, apiErr.Status)
		})
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()

	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	_, err := send(t, openSystem(t, twilio.Config{BaseURL: refused.URL, From: "+1"}), map[string]any{"to": "+1", "body": "x"})
	require.Error(t, err)
	require.False(t, connector.IsPermanent(err))
	_, hasAfter := connector.RetryAfterOf(err)
	require.False(t, hasAfter)
}

func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()

	basic := base64.StdEncoding.EncodeToString([]byte(sid + ":" + token))
	for _, status := range []int{400, 429, 500} {
		up := connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			msg := "you sent " + r.Header.Get("Authorization") + " password " + token
			_, _ = io.WriteString(w, twilioError(20003, msg, status))
		})
		_, err := send(t, openSystem(t, twilio.Config{BaseURL: up.URL, From: "+1"}), map[string]any{"to": "+1", "body": "x"})
		connectortest.NoSecrets(t, err, token, basic)
		require.True(t, strings.Contains(err.Error(), "[redacted]"), err.Error())
	}
}
