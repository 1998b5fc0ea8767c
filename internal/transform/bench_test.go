package transform_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

var benchPayload = []byte(`{"id":"e1","email":"ann@example.com","first_name":"Ann","phone":"+15550100","notes":"` + strings.Repeat("x", 900) + `"}`)

// BenchmarkDecode is the cost of turning a body into jq values (once at
// ingest, once per run at delivery): the bench's flat body, a realistic
// ~1 KB webhook (a payment event) and a ~16 KB one (an order with line
// items).
func BenchmarkDecode(b *testing.B) {
	for _, bb := range []struct {
		name string
		body []byte
	}{
		{"flat_1KB", benchPayload},
		{"webhook_1KB", readFile(b, "testdata/webhook_1k.json")},
		{"webhook_16KB", readFile(b, "testdata/webhook_16k.json")},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				_, err := transform.Decode(bb.body)
				require.NoError(b, err)
			}
		})
	}
}

func readFile(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(name)
	require.NoError(tb, err)
	return data
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

// BenchmarkPath is a plain path (.id: most keys and template fields) and a
// plain object (a typical step body), which Eval builds itself, against
// the same expressions through gojq (in parentheses).
func BenchmarkPath(b *testing.B) {
	payload, err := transform.Decode(benchPayload)
	require.NoError(b, err)
	const object = `{id: .id, email: .email, contact: {phone: .phone}}`
	for _, src := range []string{".id", "(.id)", object, "(" + object + ")"} {
		e := transform.MustCompile(src)
		b.Run(src, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Eval(b.Context(), payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
