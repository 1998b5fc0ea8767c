package httpcall

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestInputTypes(t *testing.T) {
	t.Parallel()
	connectortest.CheckInputTypes(t, requestSpec, map[string]any{
		"method":  "PUT",
		"path":    "/contacts",
		"query":   map[string]any{"q": []any{"a", 1, true}},
		"headers": map[string]any{"X-A": "b"},
		"body":    map[string]any{"a": 1},
	}, func(m map[string]any) error {
		_, err := parseInput(m)
		return err
	})
}
