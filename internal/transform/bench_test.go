package transform_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

var benchPayload = []byte(`{"id":"e1","email":"ann@example.com","first_name":"Ann","phone":"+15550100","notes":"` + strings.Repeat("x", 900) + `"}`)

// BenchmarkDecode is the per-run cost of turning a stored payload into jq
// values.
func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		_, err := transform.Decode(benchPayload)
		require.NoError(b, err)
	}
}

// BenchmarkMapping evaluates a typical step input: an object built from
// payload fields, a string interpolation and an earlier step's output.
func BenchmarkMapping(b *testing.B) {
	e := transform.MustCompile(`{to: .phone, body: "Thanks \(.first_name), we will call you today.", contact: $steps.contact.id, email: .email}`, "$steps", "$event")
	payload, err := transform.Decode(benchPayload)
	require.NoError(b, err)
	steps := map[string]any{"contact": map[string]any{"id": "c_1"}}
	event := map[string]any{"id": "evt_1"}
	for b.Loop() {
		_, err := e.Eval(b.Context(), payload, steps, event)
		require.NoError(b, err)
	}
}
