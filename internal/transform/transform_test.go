package transform_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

func TestEval(t *testing.T) {
	t.Parallel()
	payload, err := transform.Decode([]byte(`{"email":"a@b.c","first_name":"Ann","id":12345678901234567890,"tags":["x","y"]}`))
	require.NoError(t, err)
	steps := map[string]any{"contact": map[string]any{"id": "c_1"}}
	event := map[string]any{"id": "evt_1"}
	tests := []struct {
		name string
		src  string
		want any
	}{
		{"field", ".email", "a@b.c"},
		{"literal", `"POST"`, "POST"},
		{"interpolation", `"Hi \(.first_name)"`, "Hi Ann"},
		{"object", `{properties: {email: .email}}`, map[string]any{"properties": map[string]any{"email": "a@b.c"}}},
		{"step output", `$steps.contact.id`, "c_1"},
		{"event", `$event.id`, "evt_1"},
		{"big id stays exact", `.id`, json.Number("12345678901234567890")},
		{"no result is null", `empty`, nil},
		{"missing is null", `.nope`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := transform.Compile(tt.src, "$steps", "$event")
			require.NoError(t, err)
			got, err := e.Eval(t.Context(), payload, steps, event)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestEvalAll(t *testing.T) {
	t.Parallel()
	payload, err := transform.Decode([]byte(`{"jobs":[{"id":1},{"id":2}]}`))
	require.NoError(t, err)
	e := transform.MustCompile(".jobs[].id")
	got, err := e.EvalAll(t.Context(), payload)
	require.NoError(t, err)
	require.Equal(t, []any{json.Number("1"), json.Number("2")}, got)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	_, err := transform.Compile(".a | ")
	var se *transform.SyntaxError
	require.ErrorAs(t, err, &se)
	require.Contains(t, err.Error(), "jq syntax error")

	_, err = transform.Compile("$secret")
	require.ErrorContains(t, err, "$secret")

	e := transform.MustCompile(".a + 1")
	_, err = e.Eval(t.Context(), map[string]any{"a": "text"})
	require.ErrorContains(t, err, "cannot add")

	loop := transform.MustCompile("repeat(.)")
	_, err = loop.Eval(t.Context(), 1)
	require.NoError(t, err, "first result arrives at once")
	// range, not repeat: repeat's recursion deepens with every result, and
	// under -race on a loaded machine 10,000 of them took longer than the
	// evaluation timeout.
	_, err = transform.MustCompile("range(1e9)").EvalAll(t.Context(), nil)
	require.ErrorContains(t, err, "more than")

	_, err = transform.Decode([]byte(`{"a":1} {"b":2}`))
	require.Error(t, err)
}

func TestConstant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src      string
		want     any
		constant bool
	}{
		{`"POST"`, "POST", true},
		{`42`, 42, true},
		{`null`, nil, true},
		{`{a: [1, "x"], "b": true}`, map[string]any{"a": []any{1, "x"}, "b": true}, true},
		{`.email`, nil, false},
		{`"Hi \(.name)"`, nil, false},
		{`{email}`, nil, false},
		{`$steps.a`, nil, false},
		{`now`, nil, false},
		{`1 + 1`, nil, false},
		{`[.[] | .id]`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			e := transform.MustCompile(tt.src, "$steps", "$event")
			v, ok := e.Constant()
			require.Equal(t, tt.constant, ok)
			if ok {
				require.Equal(t, tt.want, v)
			}
		})
	}
}

// TestFastPaths checks that plain paths (.a.b), scalar constants and
// objects built of them, which Eval answers without running gojq, give
// what gojq gives: the same expression wrapped so that it takes gojq's road
// is the reference.
func TestFastPaths(t *testing.T) {
	t.Parallel()
	input, err := transform.Decode([]byte(`{"id":12345678901234567890,"a":{"b":"x","n":null,"z":1.5},"s":"str","list":[1]}`))
	require.NoError(t, err)
	inputs := []any{input, nil, "a string", json.Number("3"), []any{1}, map[string]any{}}
	for _, src := range []string{".id", ".a", ".a.b", ".a.n", ".a.n.deeper", ".a.missing.deeper", ".s.x", ".list.x", ".a.z",
		`{id: .id, n: 1, f: 1.5, s: "x", t: true, z: null}`, `{id}`, `{"a b": .s, "if": .a.b}`, `{a: {b: .a.b, c: {d: .a.z}}}`,
		`{a: .a.n.deeper}`, `{x: .s.x}`, `{a: {b: .list.x}}`, `{a: .id, a: .s}`,
		// not plain: gojq answers, and must still
		`{a: .s?}`, `{(.s): 1}`, `{"k\(.s)": 1}`, `{a: .s, b: (.a | .b)}`, `{a: 12345678901234567890}`} {
		fast := transform.MustCompile(src)
		slow := transform.MustCompile("(" + src + ")")
		for _, in := range inputs {
			want, wantErr := slow.Eval(t.Context(), in)
			got, gotErr := fast.Eval(t.Context(), in)
			require.Equal(t, want, got, "%s on %v", src, in)
			if wantErr != nil {
				require.EqualError(t, gotErr, strings.Replace(wantErr.Error(), strconv.Quote("("+src+")"), strconv.Quote(src), 1), "%s on %v", src, in)
			} else {
				require.NoError(t, gotErr, "%s on %v", src, in)
			}
		}
	}
	for _, src := range []string{`"POST"`, `42`, `1.5`, `true`, `null`, `"a", "b"`} {
		fast := transform.MustCompile(src)
		slow := transform.MustCompile(src + " | .")
		want, err := slow.Eval(t.Context(), input)
		require.NoError(t, err)
		got, err := fast.Eval(t.Context(), input)
		require.NoError(t, err)
		require.Equal(t, want, got, src)
	}
}

// TestFastPathsSkipGojq tells which expressions Eval answers without gojq:
// only gojq sees the context, so with a cancelled one the fast paths still
// answer and the others fail.
func TestFastPathsSkipGojq(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	input := map[string]any{"id": "e1", "a": map[string]any{"b": "x"}}
	for src, fast := range map[string]bool{
		`.id`: true, `"POST"`: true, `{id: .id, kind: "lead", contact: {email: .a.b}, a}`: true, `{"a b": .id}`: true,
		`.id?`: false, `{a: .id | ascii_downcase}`: false, `{(.id): 1}`: false, `{a: [.id]}`: false, `{id: $x}`: false,
	} {
		e := transform.MustCompile(src, "$x")
		_, err := e.Eval(ctx, input, nil)
		if fast {
			require.NoError(t, err, src)
		} else {
			require.ErrorIs(t, err, context.Canceled, src)
		}
	}
}
