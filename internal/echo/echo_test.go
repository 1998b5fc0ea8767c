package echo_test

import (
	"encoding/json"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/echo"
)

func TestHashNormalises(t *testing.T) {
	t.Parallel()
	written := map[string]any{"status": "done", "price": 42, "due": "2026-03-02T10:00:00+01:00", "tags": []any{"a", "b"}, "note": ""}
	fp := echo.Of(written)
	require.Equal(t, []string{"due", "note", "price", "status", "tags"}, fp.Fields)

	tests := []struct {
		name  string
		echo  map[string]any
		match bool
	}{
		{"the same record with more fields", map[string]any{"status": "done", "price": json.Number("42"), "due": "2026-03-02T09:00:00.000Z",
			"tags": []any{"a", "b"}, "updated_at": "2026-03-02T09:00:01Z", "id": 7}, true},
		{"padded strings and a float price", map[string]any{"status": " done ", "price": 42.0, "due": "2026-03-02T09:00:00Z", "tags": []any{"a", "b"}, "note": nil}, true},
		{"a changed field", map[string]any{"status": "open", "price": 42, "due": "2026-03-02T09:00:00Z", "tags": []any{"a", "b"}}, false},
		{"a number in a string is not a number", map[string]any{"status": "done", "price": "42", "due": "2026-03-02T09:00:00Z", "tags": []any{"a", "b"}}, false},
		{"list order matters", map[string]any{"status": "done", "price": 42, "due": "2026-03-02T09:00:00Z", "tags": []any{"b", "a"}}, false},
		{"a cleared field is a change", map[string]any{"status": "done", "price": 42, "due": "2026-03-02T09:00:00Z"}, false},
		{"case matters", map[string]any{"status": "Done", "price": 42, "due": "2026-03-02T09:00:00Z", "tags": []any{"a", "b"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.match, echo.Hash(tt.echo, fp.Fields) == fp.Hash)
		})
	}
}

func TestNormalizeLongIntegers(t *testing.T) {
	t.Parallel()
	a := echo.Normalize(json.Number("12345678901234567890"))
	b := echo.Normalize(json.Number("12345678901234567891"))
	require.NotEqual(t, a, b, "ids beyond float64 precision keep their digits")
	require.Equal(t, echo.Normalize(map[string]any{"a": nil}), echo.Normalize(""), "an object of nulls is null")
}

// TestHashStable pins the hash of a record touching every normalisation
// rule: fingerprints are stored, so a change to Normalize (or to Walk,
// which reconciliation shares) must not move the hash of a stored write.
func TestHashStable(t *testing.T) {
	t.Parallel()
	rec := map[string]any{
		"name": " Ann ", "empty": "", "none": nil, "at": "2026-03-02T10:00:00+01:00",
		"n": json.Number("42.0"), "big": json.Number("12345678901234567891"), "f": 1.5, "i": 7, "ok": true,
		"nested": map[string]any{"a": []any{}, "b": map[string]any{"c": nil}, "d": []any{nil, "x", json.Number("3")}},
		"list":   []any{map[string]any{"k": " v "}, []any{}},
	}
	require.Equal(t, "83914a59601f929b0b9e6648c8a90a9ab281fc870853fb83c3482cf065a6d95b", echo.Of(rec).Hash)
}

// TestLongIntegersMatchTheirJSON hashes a long id as jq computes it (an
// int, or a *big.Int beyond int64) and as a record sends it (json.Number):
// the echo of a write of a computed id must match.
func TestLongIntegersMatchTheirJSON(t *testing.T) {
	t.Parallel()
	big20, _ := new(big.Int).SetString("12345678901234567890", 10)
	for _, tt := range []struct {
		computed any
		sent     json.Number
	}{
		{9007199254740993, "9007199254740993"},
		{int64(-9007199254740993), "-9007199254740993"},
		{big20, "12345678901234567890"},
		{big.NewInt(42), "42"},
		{7, "7"},
	} {
		require.Equal(t, echo.Hash(map[string]any{"id": tt.sent}, []string{"id"}), echo.Hash(map[string]any{"id": tt.computed}, []string{"id"}), "%v", tt.computed)
	}
	require.NotEqual(t, echo.Normalize(9007199254740993), echo.Normalize(9007199254740992), "long ids keep their last digit")
}
