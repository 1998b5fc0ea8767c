package hubspot_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/hubspot"
)

const token = "pat-na1-s3cr3t-T0ken"

func hubspotKind(t testing.TB) *connector.Kind {
	t.Helper()
	r := connector.NewRegistry()
	hubspot.Register(r)
	k, ok := r.Kind("hubspot")
	require.True(t, ok)
	return k
}

func openSystem(t testing.TB, baseURL string) connector.System {
	t.Helper()
	sys, err := hubspotKind(t).Open(connector.OpenParams{Name: "crm", Config: &hubspot.Config{BaseURL: baseURL, Token: token}})
	require.NoError(t, err)
	return sys
}

// call runs action name of sys with idempotency key "sb_key1".
func call(t testing.TB, sys connector.System, name string, in map[string]any) (connector.Result, error) {
	t.Helper()
	act, ok := sys.Action(name)
	require.True(t, ok, "action %s", name)
	return act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "sb_key1"})
}

func TestRegister(t *testing.T) {
	t.Parallel()

	k := hubspotKind(t)
	require.IsType(t, &hubspot.Config{}, k.NewConfig())
	var names []string
	for _, a := range k.Actions {
		names = append(names, a.Name)
		require.NotEmpty(t, a.Doc, a.Name)
	}
	require.Equal(t, []string{
		"upsert_contact", "update_contact", "assign_owner", "create_note", "create_task",
		"create_deal", "update_deal", "move_deal_stage", "associate_deal_contact",
	}, names)
	spec, ok := k.Action("upsert_contact")
	require.True(t, ok)
	require.Equal(t, connector.Input{Name: "email", Required: true, Type: connector.TypeString, Doc: spec.Inputs[0].Doc}, spec.Inputs[0])

	sys := openSystem(t, "")
	for _, n := range names {
		_, ok := sys.Action(n)
		require.True(t, ok, n)
	}
	_, ok = sys.Action("nope")
	require.False(t, ok)
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     any
		wantErr string
	}{
		{"missing token", &hubspot.Config{}, "token: required"},
		{"token newline", &hubspot.Config{Token: token + "\n"}, "token: must not contain control characters"},
		{"relative base_url", &hubspot.Config{Token: token, BaseURL: "/api"}, "base_url: must be an absolute http or https URL"},
		{"base_url credentials", &hubspot.Config{Token: token, BaseURL: "https://u:p@api.hubapi.com"}, "base_url: must not contain credentials"},
		{"base_url query", &hubspot.Config{Token: token, BaseURL: "https://api.hubapi.com?hapikey=x"}, "base_url: must not contain a query"},
		{"negative timeout", &hubspot.Config{Token: token, Timeout: -time.Second}, "timeout: must not be negative"},
		{"wrong config type", &struct{}{}, "hubspot: config is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := hubspotKind(t).Open(connector.OpenParams{Name: "crm", Config: tt.cfg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), token)
		})
	}

	t.Run("several problems at once", func(t *testing.T) {
		t.Parallel()
		_, err := hubspotKind(t).Open(connector.OpenParams{Config: &hubspot.Config{BaseURL: "ftp://x", Timeout: -1}})
		require.ErrorContains(t, err, "base_url:")
		require.ErrorContains(t, err, "token: required")
		require.ErrorContains(t, err, "timeout:")
	})
}

// specCheck names the vendor spec covering a request, and how its path is
// spelt there.
type specCheck struct {
	file    string
	rewrite func(path string) string
}

var (
	contactsSpec = &specCheck{file: "hubspot-crm-contacts-v3.json"}
	// The deals spec names the object by its type id, 0-3.
	dealsSpec = &specCheck{file: "hubspot-crm-deals-v3.json", rewrite: func(p string) string {
		return strings.Replace(p, "/objects/deals", "/objects/0-3", 1)
	}}
	// Notes and tasks use the same generic CRM object API as contacts,
	// with the same create schema; no spec of their own is vendored.
	asContactsSpec = &specCheck{file: "hubspot-crm-contacts-v3.json", rewrite: func(p string) string {
		return strings.NewReplacer("/objects/notes", "/objects/contacts", "/objects/tasks", "/objects/contacts").Replace(p)
	}}
)

func TestRequests(t *testing.T) {
	t.Parallel()

	contact := `{"id":"501","properties":{"email":"ann@example.com"},"archived":false}`
	tests := []struct {
		name       string
		action     string
		input      map[string]any
		answer     string
		wantMethod string
		wantURI    string
		wantBody   string // JSON; empty for no body
		wantOutput any
		spec       *specCheck
	}{
		{
			name: "upsert contact", action: "upsert_contact",
			input: map[string]any{"email": "ann@example.com", "properties": map[string]any{
				"firstname": "Ann", "employees": json.Number("12"), "vip": true, "notes": nil, "tags": []any{"a", "b"},
			}},
			answer:     `{"status":"COMPLETE","results":[{"id":"501","new":true,"properties":{"email":"ann@example.com"}}],"startedAt":"x","completedAt":"y"}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/contacts/batch/upsert",
			wantBody: `{"inputs":[{"idProperty":"email","id":"ann@example.com","properties":{
				"employees":"12","firstname":"Ann","notes":"","tags":"a;b","vip":"true"}}]}`,
			wantOutput: map[string]any{"id": "501", "new": true, "properties": map[string]any{"email": "ann@example.com"}},
			spec:       contactsSpec,
		},
		{
			name: "upsert contact without properties", action: "upsert_contact",
			input:      map[string]any{"email": "ann@example.com"},
			answer:     `{"status":"COMPLETE","results":[{"id":"501"}]}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/contacts/batch/upsert",
			wantBody:   `{"inputs":[{"idProperty":"email","id":"ann@example.com","properties":{}}]}`,
			wantOutput: map[string]any{"id": "501"},
			spec:       contactsSpec,
		},
		{
			name: "update contact", action: "update_contact",
			input:      map[string]any{"id": json.Number("501"), "properties": map[string]any{"phone": "+15550100"}},
			answer:     contact,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/contacts/501",
			wantBody: `{"properties":{"phone":"+15550100"}}`,
			spec:     contactsSpec,
		},
		{
			name: "update contact by email", action: "update_contact",
			input:      map[string]any{"id": "ann@example.com", "id_property": "email", "properties": map[string]any{"phone": "1"}},
			answer:     contact,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/contacts/ann@example.com?idProperty=email",
			wantBody: `{"properties":{"phone":"1"}}`,
			spec:     contactsSpec,
		},
		{
			name: "id is escaped", action: "update_contact",
			input:      map[string]any{"id": "a/../b", "properties": map[string]any{}},
			answer:     contact,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/contacts/a%2F..%2Fb",
			wantBody: `{"properties":{}}`,
		},
		{
			name: "assign owner", action: "assign_owner",
			input:      map[string]any{"id": "501", "owner_id": float64(77)},
			answer:     contact,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/contacts/501",
			wantBody: `{"properties":{"hubspot_owner_id":"77"}}`,
			spec:     contactsSpec,
		},
		{
			name: "create note", action: "create_note",
			input:      map[string]any{"contact_id": "501", "body": "Called <b>back</b>", "timestamp": "2025-01-31T09:00:00Z"},
			answer:     `{"id":"9001","properties":{}}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/notes",
			wantBody: `{"properties":{"hs_note_body":"Called <b>back</b>","hs_timestamp":"2025-01-31T09:00:00Z"},
				"associations":[{"to":{"id":"501"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":202}]}]}`,
			wantOutput: map[string]any{"id": "9001", "properties": map[string]any{}},
			spec:       asContactsSpec,
		},
		{
			name: "create task", action: "create_task",
			input: map[string]any{"contact_id": json.Number("501"), "subject": "Call Ann", "body": "re: quote",
				"timestamp": json.Number("1738314000000"), "properties": map[string]any{"hs_task_priority": "HIGH"}},
			answer:     `{"id":"9002"}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/tasks",
			wantBody: `{"properties":{"hs_task_body":"re: quote","hs_task_priority":"HIGH","hs_task_subject":"Call Ann","hs_timestamp":"1738314000000"},
				"associations":[{"to":{"id":"501"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":204}]}]}`,
			spec: asContactsSpec,
		},
		{
			name: "create deal with contact", action: "create_deal",
			input: map[string]any{"contact_id": "501", "properties": map[string]any{
				"dealname": "Roof repair", "dealstage": "appointmentscheduled", "pipeline": "default", "amount": float64(1500.5),
			}},
			answer:     `{"id":"42"}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/deals",
			wantBody: `{"properties":{"amount":"1500.5","dealname":"Roof repair","dealstage":"appointmentscheduled","pipeline":"default"},
				"associations":[{"to":{"id":"501"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":3}]}]}`,
			wantOutput: map[string]any{"id": "42"},
			spec:       dealsSpec,
		},
		{
			name: "create deal alone", action: "create_deal",
			input:      map[string]any{"properties": map[string]any{"dealname": "Roof repair"}},
			answer:     `{"id":"42"}`,
			wantMethod: "POST", wantURI: "/crm/v3/objects/deals",
			wantBody: `{"properties":{"dealname":"Roof repair"},"associations":[]}`,
			spec:     dealsSpec,
		},
		{
			name: "update deal", action: "update_deal",
			input:      map[string]any{"id": "42", "properties": map[string]any{"amount": "99"}},
			answer:     `{"id":"42"}`,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/deals/42",
			wantBody: `{"properties":{"amount":"99"}}`,
			spec:     dealsSpec,
		},
		{
			name: "move deal stage", action: "move_deal_stage",
			input:      map[string]any{"id": "42", "dealstage": "closedwon", "pipeline": "default"},
			answer:     `{"id":"42"}`,
			wantMethod: "PATCH", wantURI: "/crm/v3/objects/deals/42",
			wantBody: `{"properties":{"dealstage":"closedwon","pipeline":"default"}}`,
			spec:     dealsSpec,
		},
		{
			name: "associate deal and contact", action: "associate_deal_contact",
			input:      map[string]any{"deal_id": "42", "contact_id": json.Number("501")},
			answer:     `{"status":"COMPLETE","results":[]}`,
			wantMethod: "PUT", wantURI: "/crm/v4/objects/deals/42/associations/default/contacts/501",
			wantOutput: map[string]any{"status": "COMPLETE", "results": []any{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusOK, tt.answer))
			res, err := call(t, openSystem(t, up.URL+"/"), tt.action, tt.input)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.Status)
			if tt.wantOutput != nil {
				require.Equal(t, tt.wantOutput, res.Output)
			}

			got := up.Last(t)
			require.Equal(t, tt.wantMethod, got.Method)
			require.Equal(t, tt.wantURI, got.RequestURI)
			require.Equal(t, "Bearer "+token, got.Header.Get("Authorization"))
			require.Equal(t, "sb_key1", got.Header.Get("Idempotency-Key"))
			require.Equal(t, "application/json", got.Header.Get("Accept"))
			if tt.wantBody == "" {
				require.Empty(t, got.Body)
				require.Empty(t, got.Header.Get("Content-Type"))
			} else {
				require.Equal(t, "application/json", got.Header.Get("Content-Type"))
				require.JSONEq(t, tt.wantBody, got.Body)
			}

			if tt.spec != nil {
				path, _, _ := strings.Cut(got.RequestURI, "?")
				if tt.spec.rewrite != nil {
					path = tt.spec.rewrite(path)
				}
				connectortest.LoadSpec(t, tt.spec.file).Check(t, connectortest.SpecRequest{
					Method: got.Method, Path: path, ContentType: got.Header.Get("Content-Type"), Body: got.Body,
				})
			}
		})
	}
}

func TestDefaultTimestamp(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, connectortest.JSON(http.StatusCreated, `{"id":"1"}`))
	before := time.Now().Add(-time.Millisecond)
	_, err := call(t, openSystem(t, up.URL), "create_note", map[string]any{"contact_id": "501", "body": "hi"})
	require.NoError(t, err)

	var body struct {
		Properties map[string]string `json:"properties"`
	}
	require.NoError(t, json.Unmarshal([]byte(up.Last(t).Body), &body))
	ts, err := time.Parse(time.RFC3339Nano, body.Properties["hs_timestamp"])
	require.NoError(t, err)
	require.WithinRange(t, ts, before, time.Now())
}

func TestInputErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		action  string
		input   map[string]any
		wantErr string
	}{
		{"email missing", "upsert_contact", map[string]any{}, `input "email": required`},
		{"email null", "upsert_contact", map[string]any{"email": nil}, `input "email": required`},
		{"email number", "upsert_contact", map[string]any{"email": json.Number("1")}, `input "email": want a string, got number`},
		{"properties not object", "upsert_contact", map[string]any{"email": "a@b", "properties": []any{}}, `input "properties": want an object, got array`},
		{"property value object", "upsert_contact", map[string]any{"email": "a@b", "properties": map[string]any{"x": map[string]any{}}},
			`input "properties": key "x": want a string, number, bool, null or a list of them, got object`},
		{"unknown input", "upsert_contact", map[string]any{"email": "a@b", "firstname": "Ann"}, `input "firstname": unknown input (accepted: email, properties)`},
		{"id dot segment", "update_contact", map[string]any{"id": "..", "properties": map[string]any{}}, `input "id": ".." is not an id`},
		{"id fractional", "update_contact", map[string]any{"id": 1.5, "properties": map[string]any{}}, `input "id": want a string or an integer, got number`},
		{"properties required", "update_contact", map[string]any{"id": "1"}, `input "properties": required`},
		{"owner missing", "assign_owner", map[string]any{"id": "1"}, `input "owner_id": required`},
		{"note body missing", "create_note", map[string]any{"contact_id": "1"}, `input "body": required`},
		{"bad timestamp", "create_note", map[string]any{"contact_id": "1", "body": "x", "timestamp": "yesterday"}, `input "timestamp": want an RFC 3339 time`},
		{"task subject missing", "create_task", map[string]any{"contact_id": "1"}, `input "subject": required`},
		{"dealname missing", "create_deal", map[string]any{"properties": map[string]any{"dealstage": "x"}}, `input "properties": key "dealname": required`},
		{"stage missing", "move_deal_stage", map[string]any{"id": "1"}, `input "dealstage": required`},
		{"contact id empty", "associate_deal_contact", map[string]any{"deal_id": "1", "contact_id": ""}, `input "contact_id": required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			_, err := call(t, openSystem(t, up.URL), tt.action, tt.input)
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.ErrorContains(t, err, tt.wantErr)
			require.Zero(t, up.Count())
		})
	}
}
