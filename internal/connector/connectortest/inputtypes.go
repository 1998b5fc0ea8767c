package connectortest

import (
	"encoding/json"
	"maps"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

// shapeSamples are values of every JSON shape an input can take, as a step's
// `with:` hands them to an action.
var shapeSamples = []any{
	nil, "s", "", true, 1, int64(1), 1.5, json.Number("1"),
	map[string]any{}, map[string]any{"k": "v"},
	[]any{}, []any{"s"}, []any{1},
}

// CheckInputTypes checks every input's Type in spec against parse, the
// action's run-time input parsing. Starting from valid, inputs parse
// accepts, it sets one input at a time to values of every shape (and to its
// value in valid) and requires that
//   - every value parse accepts is one Type accepts: a Type must never
//     reject a valid config, and
//   - every value a Type other than TypeAny accepts passes parse's type
//     check: parse may reject it for its content (an address that does not
//     parse, a required input left empty) but not with "want a …".
//
// Only the top level of a value is checked, as Accepts checks it.
func CheckInputTypes(t *testing.T, spec connector.ActionSpec, valid map[string]any, parse func(map[string]any) error) {
	t.Helper()
	require.NoError(t, parse(valid), "%s: valid inputs", spec.Name)
	for _, input := range spec.Inputs {
		samples := shapeSamples
		if v, ok := valid[input.Name]; ok {
			samples = append([]any{v}, shapeSamples...)
		}
		for _, v := range samples {
			in := maps.Clone(valid)
			in[input.Name] = v
			err := parse(in)
			if err == nil {
				assert.True(t, input.Type.Accepts(v), "%s.%s: parse accepts %#v but Type %q rejects it", spec.Name, input.Name, v, input.Type)
			} else if input.Type != connector.TypeAny && input.Type.Accepts(v) {
				assert.NotContains(t, err.Error(), "want a", "%s.%s: Type %q accepts %#v but parse rejects its type", spec.Name, input.Name, input.Type, v)
			}
		}
	}
}
