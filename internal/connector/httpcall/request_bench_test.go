package httpcall

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

// BenchmarkNewRequest measures building one step's request, which the
// executor does for every run: the input's checks, the URL under base_url,
// the JSON body and the headers. (The bench's step, a body mapped from the
// event, is this shape.)
func BenchmarkNewRequest(b *testing.B) {
	sys, err := open(connector.OpenParams{Name: "crm", Config: &Config{
		BaseURL: "https://api.example.com/v2",
		Headers: map[string]string{"Accept": "application/json"},
		Auth:    Auth{Bearer: "s3cr3t"},
	}})
	if err != nil {
		b.Fatal(err)
	}
	s := sys.(*system)
	with := map[string]any{
		"method": "POST",
		"path":   "/contacts",
		"body": map[string]any{
			"id": "evt-000123", "email": "ada@example.com", "source": "web form",
			"contact": map[string]any{"phone": "+15555550123", "name": "Ada Lovelace"},
			"score":   42.0, "tags": []any{"lead", "spring"},
		},
	}
	b.ReportAllocs()
	for b.Loop() {
		in, err := parseInput(with)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.newRequest(b.Context(), in, "run-1/0", ""); err != nil {
			b.Fatal(err)
		}
	}
}
