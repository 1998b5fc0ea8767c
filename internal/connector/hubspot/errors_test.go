package hubspot_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestClassification(t *testing.T) {
	t.Parallel()

	const (
		ok = iota
		transient
		permanent
	)
	tests := []struct {
		name       string
		action     string // defaults to create_deal
		status     int
		headers    map[string]string
		body       string
		want       int
		wantAfter  time.Duration // checked when afterOK
		afterOK    bool
		wantOutput any
		wantErr    string
	}{
		{name: "201 created", status: 201, body: `{"id":"42"}`, want: ok, wantOutput: map[string]any{"id": "42"}},
		{name: "204 no content", status: 204, want: ok},
		{name: "200 not JSON", status: 200, body: "ok", want: ok},
		{name: "400 validation", status: 400, want: permanent,
			body:    `{"status":"error","message":"Property values were not valid","category":"VALIDATION_ERROR","correlationId":"c1"}`,
			wantErr: "POST /crm/v3/objects/deals: 400 Bad Request (VALIDATION_ERROR): Property values were not valid"},
		{name: "401", status: 401, body: `{"message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}`, want: permanent,
			wantErr: "401 Unauthorized (INVALID_AUTHENTICATION): Authentication credentials not found."},
		{name: "403 missing scopes", status: 403, body: `{"message":"This app hasn't been granted all required scopes","category":"MISSING_SCOPES"}`, want: permanent},
		{name: "404", action: "update_deal", status: 404, body: `{"message":"resource not found","category":"OBJECT_NOT_FOUND"}`, want: permanent,
			wantErr: "PATCH /crm/v3/objects/deals/42: 404 Not Found (OBJECT_NOT_FOUND): resource not found"},
		{name: "302 not followed", status: 302, headers: map[string]string{"Location": "https://elsewhere.example/"}, want: permanent},
		{name: "409 on update", action: "update_deal", status: 409, body: `{"message":"Contact already exists. Existing ID: 7","category":"CONFLICT"}`, want: permanent},
		{name: "409 on create without id", status: 409, body: `{"message":"Conflict","category":"CONFLICT"}`, want: permanent},
		{name: "408", status: 408, want: transient},
		{name: "425", status: 425, want: transient},
		{name: "429 without hints", status: 429, body: `{"message":"You have reached your secondly limit.","errorType":"RATE_LIMIT"}`, want: transient,
			wantErr: "429 Too Many Requests: You have reached your secondly limit."},
		{name: "429 retry-after", status: 429, headers: map[string]string{"Retry-After": "7"}, want: transient, wantAfter: 7 * time.Second, afterOK: true},
		{name: "429 window exhausted", status: 429, headers: map[string]string{
			"X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Max": "100",
		}, want: transient, wantAfter: 10 * time.Second, afterOK: true},
		{name: "429 window not exhausted", status: 429, headers: map[string]string{
			"X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Remaining": "3",
		}, want: transient},
		{name: "429 secondly exhausted", status: 429, headers: map[string]string{
			"X-HubSpot-RateLimit-Secondly-Remaining": "0", "X-HubSpot-RateLimit-Remaining": "50",
		}, want: transient, wantAfter: time.Second, afterOK: true},
		{name: "429 retry-after wins", status: 429, headers: map[string]string{
			"Retry-After": "2", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Remaining": "0",
		}, want: transient, wantAfter: 2 * time.Second, afterOK: true},
		{name: "500", status: 500, body: `{"message":"internal error","category":"INTERNAL_ERROR"}`, want: transient},
		{name: "502", status: 502, body: "<html>bad gateway</html>", want: transient, wantErr: "502 Bad Gateway: <html>bad gateway</html>"},
		{name: "503 retry-after", status: 503, headers: map[string]string{"Retry-After": "30"}, want: transient, wantAfter: 30 * time.Second, afterOK: true},
		{name: "504", status: 504, want: transient},
		{name: "599", status: 599, want: transient},
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
			action, input := "create_deal", map[string]any{"properties": map[string]any{"dealname": "x"}}
			if tt.action == "update_deal" {
				action, input = "update_deal", map[string]any{"id": "42", "properties": map[string]any{"dealname": "x"}}
			}
			res, err := call(t, openSystem(t, up.URL), action, input)
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, tt.body, string(res.Body))
			require.Equal(t, 1, up.Count())

			switch tt.want {
			case ok:
				require.NoError(t, err)
				require.Equal(t, tt.wantOutput, res.Output)
				return
			case transient:
				require.Error(t, err)
				require.False(t, connector.IsPermanent(err), "want transient, got permanent %v", err)
			case permanent:
				require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			}
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
			}
			after, hasAfter := connector.RetryAfterOf(err)
			require.Equal(t, tt.afterOK, hasAfter)
			require.Equal(t, tt.wantAfter, after)
		})
	}
}

func TestConflictOnCreateIsSuccess(t *testing.T) {
	t.Parallel()

	conflict := `{"status":"error","message":"Contact already exists. Existing ID: 12345","correlationId":"c1","category":"CONFLICT"}`
	tests := []struct {
		name   string
		action string
		input  map[string]any
		status int
		body   string
	}{
		{"409 on upsert", "upsert_contact", map[string]any{"email": "ann@example.com"}, http.StatusConflict, conflict},
		{"batch item conflict", "upsert_contact", map[string]any{"email": "ann@example.com"}, http.StatusMultiStatus,
			`{"status":"COMPLETE","results":[],"numErrors":1,"errors":[{"status":"error","category":"CONFLICT","message":"Contact already exists. Existing ID: 12345"}]}`},
		{"409 on create_note", "create_note", map[string]any{"contact_id": "1", "body": "x"}, http.StatusConflict,
			`{"message":"Note already exists. Existing ID: 12345","category":"CONFLICT"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, connectortest.JSON(tt.status, tt.body))
			res, err := call(t, openSystem(t, up.URL), tt.action, tt.input)
			require.NoError(t, err)
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, map[string]any{"id": "12345", "existing": true}, res.Output)
		})
	}
}

func TestBatchItemError(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusMultiStatus,
		`{"status":"COMPLETE","results":[],"numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property \"lifecyclestage\" has invalid value"}]}`))
	_, err := call(t, openSystem(t, up.URL), "upsert_contact", map[string]any{"email": "ann@example.com"})
	require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
	require.EqualError(t, err, `POST /crm/v3/objects/contacts/batch/upsert: 207: batch item failed (VALIDATION_ERROR): Property "lifecyclestage" has invalid value`)

	empty := connectortest.NewUpstream(t, connectortest.JSON(http.StatusOK, `{"status":"COMPLETE","results":[]}`))
	_, err = call(t, openSystem(t, empty.URL), "upsert_contact", map[string]any{"email": "ann@example.com"})
	require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()

	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	_, err := call(t, openSystem(t, refused.URL), "create_deal", map[string]any{"properties": map[string]any{"dealname": "x"}})
	require.Error(t, err)
	require.False(t, connector.IsPermanent(err))
	require.ErrorContains(t, err, "POST /crm/v3/objects/deals: ")
}

func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()

	// echo answers with the credentials it got, as a misbehaving proxy might.
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"message":"bad auth `+r.Header.Get("Authorization")+`"}`)
		}
	}
	for _, status := range []int{401, 429, 500} {
		up := connectortest.NewUpstream(t, echo(status))
		_, err := call(t, openSystem(t, up.URL), "assign_owner", map[string]any{"id": "1", "owner_id": "2"})
		connectortest.NoSecrets(t, err, token)
		require.ErrorContains(t, err, "[redacted]")
	}
}
