package poll_test

import (
	"encoding/json"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/poll"
)

// TestSame pins the comparison rule of reconciliations (see poll.Same).
func TestSame(t *testing.T) {
	t.Parallel()
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		name          string
		owner, mirror any
		same          bool
	}{
		{"equal strings", "Ann", "Ann", true},
		{"case matters", "Ann", "ann", false},
		{"surrounding space does not", " Ann\t", "Ann", true},
		{"inner space does", "Ann Lee", "Ann  Lee", false},
		{"null and missing", nil, nil, true},
		{"null and empty string", nil, "  ", true},
		{"null and empty list", nil, []any{}, true},
		{"null and empty object", map[string]any{}, nil, true},
		{"null and zero", nil, n("0"), false},
		{"integer and decimal", n("5"), n("5.0"), true},
		{"exponent", n("1.5e3"), n("1500"), true},
		{"negative zero", n("-0"), n("0.00"), true},
		{"jq float and json number", 0.5, n("0.50"), true},
		{"jq int", 42, n("42"), true},
		{"big int exact", new(big.Int).SetUint64(12345678901234567891), n("12345678901234567891"), true},
		{"long ids differ in the last digit", n("12345678901234567891"), n("12345678901234567892"), false},
		{"number in a string", "5", n("5"), true},
		{"decimal in a string", "19.90", 19.9, true},
		{"leading zero string stays a string", "05", n("5"), false},
		{"zip code", "02139", n("2139"), false},
		{"sign", n("-5"), n("5"), false},
		{"boolean in a string", "true", true, true},
		{"booleans differ", true, false, false},
		{"boolean and number", true, n("1"), false},
		{"times in zones", "2026-03-02T10:00:00+01:00", "2026-03-02T09:00:00.000Z", true},
		{"times differ", "2026-03-02T10:00:00Z", "2026-03-02T10:00:01Z", false},
		{"date only is text", "2026-03-02", "2026-03-02T00:00:00Z", false},
		{"objects ignore empty members", map[string]any{"a": n("1"), "b": nil}, map[string]any{"a": "1"}, true},
		{"objects differ", map[string]any{"a": n("1")}, map[string]any{"a": n("2")}, false},
		{"lists in order", []any{"a", n("1")}, []any{"a", "1"}, true},
		{"lists out of order", []any{"a", "b"}, []any{"b", "a"}, false},
		{"string and list", "a", []any{"a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.same, poll.Same(tt.owner, tt.mirror))
			require.Equal(t, tt.same, poll.Same(tt.mirror, tt.owner), "symmetric")
		})
	}
}
