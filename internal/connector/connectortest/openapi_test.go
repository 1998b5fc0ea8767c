package connectortest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testSpec = `{
  "openapi": "3.0.1",
  "paths": {
    "/v1/Accounts/{AccountSid}/Messages.json": {
      "post": {
        "parameters": [{"name": "AccountSid", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^AC[0-9a-f]{4}$"}}],
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
          "type": "object", "required": ["To"],
          "properties": {"To": {"type": "string"}, "Body": {"type": "string"}, "Attempt": {"type": "integer"}}
        }}}}
      }
    },
    "/v1/things": {
      "post": {"requestBody": {"required": true, "$ref": "#/components/requestBodies/Thing"}}
    },
    "/v1/things/{id}": {"delete": {}}
  },
  "components": {
    "requestBodies": {"Thing": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}},
    "schemas": {
      "Thing": {"type": "object", "required": ["name", "tags"], "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "owner": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "format": "email"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
      }}
    }
  }
}`

func parseTestSpec(t *testing.T) *Spec {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(testSpec)))
	dec.UseNumber()
	var doc map[string]any
	require.NoError(t, dec.Decode(&doc))
	return &Spec{name: "test.json", doc: doc}
}

func TestSpecProblems(t *testing.T) {
	t.Parallel()

	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name string
		req  SpecRequest
		want []string // substrings, one per problem; none for a valid request
	}{
		{"valid form", SpecRequest{"POST", "/v1/Accounts/AC12ab/Messages.json", form, "To=%2B1555&Body=hi&Attempt=2"}, nil},
		{"valid json", SpecRequest{"POST", "/v1/things", "application/json",
			`{"name":"x","tags":["a"],"owner":{"email":"a@b.example"},"labels":{"k":"v"}}`}, nil},
		{"valid no body", SpecRequest{"DELETE", "/v1/things/7", "", ""}, nil},
		{"unknown path", SpecRequest{"POST", "/v1/nope", "", ""}, []string{"no such path"}},
		{"wrong method", SpecRequest{"GET", "/v1/things", "", ""}, []string{"no such method"}},
		{"path parameter pattern", SpecRequest{"POST", "/v1/Accounts/XX12ab/Messages.json", form, "To=1"}, []string{"path parameter AccountSid"}},
		{"media type", SpecRequest{"POST", "/v1/Accounts/AC12ab/Messages.json", "application/json", `{"To":"1"}`}, []string{"media type"}},
		{"required form field", SpecRequest{"POST", "/v1/Accounts/AC12ab/Messages.json", form, "Body=hi"}, []string{`required field "To"`}},
		{"unknown form field", SpecRequest{"POST", "/v1/Accounts/AC12ab/Messages.json", form, "To=1&Bdy=hi"}, []string{`field "Bdy" not in the spec`}},
		{"form integer", SpecRequest{"POST", "/v1/Accounts/AC12ab/Messages.json", form, "To=1&Attempt=x"}, []string{"want integer"}},
		{"body required", SpecRequest{"POST", "/v1/things", "", ""}, []string{"body required"}},
		{"json problems", SpecRequest{"POST", "/v1/things", "application/json",
			`{"name":1,"tags":["c"],"owner":{"email":"Ann <a@b>"},"labels":{"k":2},"extra":true}`}, []string{
			"body.name: want a string", "body.tags[0]: c is not one of", "body.owner.email", "body.labels.k: want a string", `field "extra" not in the spec`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := parseTestSpec(t).problems(tt.req)
			require.Len(t, got, len(tt.want), "problems: %q", got)
			for _, w := range tt.want {
				require.True(t, strings.Contains(strings.Join(got, "\n"), w), "want a problem containing %q in %q", w, got)
			}
		})
	}
}
