package transform_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

// stdDecode is what Decode must match: encoding/json with UseNumber, one
// value and nothing but whitespace after it.
func stdDecode(data []byte) (any, error) {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil { // checks the whole input first
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// checkSame fails unless Decode and encoding/json agree on data: both
// reject it, or both return the same value.
func checkSame(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := stdDecode(data)
	got, err := transform.Decode(data)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("Decode(%q) = %#v, encoding/json rejects it: %v", data, got, wantErr)
		}
		var de *transform.DecodeError
		if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(data) {
			t.Fatalf("Decode(%q): error %v is not a DecodeError with an offset in the input", data, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode(%q): %v; encoding/json accepts it: %#v", data, err, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%q) = %#v, encoding/json gives %#v", data, got, want)
	}
}

// decodeCases are hand-picked edge cases, each also a fuzz seed.
var decodeCases = []string{
	// scalars and whitespace
	`null`, `true`, `false`, `"x"`, `0`, `-0`, `1`, ` 	
 1 	
 `,
	`""`, `[]`, `{}`, `[ ]`, `{ }`, `[[[]]]`, `{"a":{"b":{}}}`,
	// numbers
	`12345678901234567890`, `-12345678901234567890`, `1.5`, `-0.0`, `1e10`, `1E+10`, `1e-10`,
	`-1.25e-300`, `1e999`, `0.000000000000000000001`, `123456789012345678901234567890.5e-7`,
	`01`, `-01`, `00`, `1.`, `.5`, `+1`, `-`, `1e`, `1e+`, `1.e5`, `0x10`, `1_000`, `[-]`, `[1.]`, `[1e]`,
	`NaN`, `Infinity`, `-Infinity`, `[NaN]`, `1x`, `[1x]`,
	// strings and escapes
	`"\"\\\/\b\f\n\r\t"`, `"\u0041\u00e9\u20ac"`, `"\u0000"`, `"\uD834\uDD1E"`, `"\ud834\udd1e"`,
	`"\uD834"`, `"\uDD1E"`, `"\uD834x"`, `"\uD834\u0041"`, `"\uDD1E\uD834"`, `"\uD834\uD834\uDD1E"`,
	`"\uD834\n"`, `"\uD834\uZZZZ"`, `"\u12"`, `"\u12G4"`, `"\x"`, `"\'"`, `"\`, `"\u`, `"abc`, `"`,
	"\"tab\there\"", "\"nl\nhere\"", "\"\x00\"", "\"\x1f\"", "\"\x7f\"",
	"\"\xff\"", "\"a\xffb\xfe\"", "\"\xe2\x82\"", "\"\xe2\x82\xac\"", "\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\"",
	"\"\xf0\x9f\x98\x80 \u00e9\"", "\"\xc3\"", "\"\xc3", "{\"\xff\":1}", "\"\\u00e9\xff\"",
	"\xff", "\"x\"\xff", "\xef\xbb\xbf{}",
	`"` + strings.Repeat("a", 100) + `é` + strings.Repeat("b", 100) + `"`,
	`"` + strings.Repeat("abcdefg\\n", 20) + `"`,
	// objects
	`{"a":1,"a":2}`, `{"a":{"x":1},"a":[2]}`, `{"":0}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`,
	`{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `{"a":1]`, `{1:2}`, `{"a":1`, `{"a":`, `{"a"`, `{`, `{"\u0061":1,"a":2}`,
	// arrays
	`[1,]`, `[,1]`, `[1,,2]`, `[1 2]`, `[1}`, `[`, `[1`, `[1,`, `[null,true,false,"",{},[]]`,
	// literals
	`tru`, `trUe`, `nul`, `nulll`, `falsey`, `True`, `NULL`, `t`,
	// around the value
	``, ` `, "\t\n\r ", `{} {}`, `{}x`, `{} ]`, `1 2`, `1 ]`, `"a" "b"`, `[] ,`, "\v1", "\f1", "1\x00",
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, c := range decodeCases {
		checkSame(t, []byte(c))
	}
	for _, name := range []string{"testdata/webhook_1k.json", "testdata/webhook_16k.json"} {
		checkSame(t, readFile(t, name))
	}
}

func TestDecodeValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want any
	}{
		{`{"id": 12345678901234567890, "n": -1.5e-3}`, map[string]any{"id": json.Number("12345678901234567890"), "n": json.Number("-1.5e-3")}},
		{`{"a":1,"a":2}`, map[string]any{"a": json.Number("2")}},
		{`"\uD834\uDD1E"`, "\U0001D11E"},
		{`"\uD834"`, "\uFFFD"},
		{`"\uD834\u0041"`, "\uFFFDA"},
		{"\"a\xffb\xe2\x82\"", "a\uFFFDb\uFFFD\uFFFD"},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
	}
	for _, tt := range tests {
		got, err := transform.Decode([]byte(tt.in))
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{``, "no JSON value (empty input) at offset 0"},
		{`{"a":`, "unexpected EOF in object at offset 5"},
		{`{"a": tru}`, "invalid character '}' in literal true (expecting 'e') at offset 9"},
		{`{"a":1,}`, "invalid character '}' looking for beginning of object key string at offset 7"},
		{`[1,]`, "invalid character ']' looking for beginning of value at offset 3"},
		{`{"a":1} {"b":2}`, "unexpected data after the JSON value at offset 8"},
		{`01`, "unexpected data after the JSON value at offset 1"},
		{`NaN`, "invalid character 'N' looking for beginning of value at offset 0"},
		{`-Infinity`, "invalid character 'I' in numeric literal at offset 1"},
		{"\"a\nb\"", `invalid character '\n' in string literal at offset 2`},
		{`"\q"`, "invalid character 'q' in string escape code at offset 2"},
		{`"\u12x4"`, `invalid character 'x' in \u hexadecimal character escape at offset 5`},
		{"\xff", `invalid character '\xff' looking for beginning of value at offset 0`},
		{`"abc`, "unexpected EOF in string literal at offset 4"},
	}
	for _, tt := range tests {
		_, err := transform.Decode([]byte(tt.in))
		require.EqualError(t, err, tt.want, tt.in)
	}
}

func TestDecodeDepth(t *testing.T) {
	t.Parallel()
	nest := func(n int, open, close string) []byte {
		return []byte(strings.Repeat(open, n) + "1" + strings.Repeat(close, n))
	}
	for _, c := range []struct{ open, close string }{{"[", "]"}, {`{"a":`, "}"}, {`[{"a":`, "}]"}} {
		depth := transform.MaxDepth
		if len(c.open) > 1 && c.open[0] == '[' {
			depth /= 2
		}
		checkSame(t, nest(depth, c.open, c.close))
		checkSame(t, nest(depth+1, c.open, c.close))
		_, err := transform.Decode(nest(depth+1, c.open, c.close))
		require.ErrorContains(t, err, "exceeded max depth of 10000")
	}
	// Far deeper, never closed: rejected at the limit, without recursing on.
	_, err := transform.Decode(bytes.Repeat([]byte("["), 10_000_000))
	require.ErrorContains(t, err, "exceeded max depth")
}

func TestDecodeCopies(t *testing.T) {
	t.Parallel()
	data := []byte(`{"key":"value","n":12,"esc":"a\nb"}`)
	v, err := transform.Decode(data)
	require.NoError(t, err)
	for i := range data {
		data[i] = 'X'
	}
	require.Equal(t, map[string]any{"key": "value", "n": json.Number("12"), "esc": "a\nb"}, v, "the value does not alias the input")
}

func TestDecodeConcurrent(t *testing.T) {
	t.Parallel()
	body := readFile(t, "testdata/webhook_16k.json")
	want, err := stdDecode(body)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := transform.Decode(body)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent Decode differs: %v", err)
					return
				}
				_, _ = transform.Decode([]byte(`[{"a":[1,2,{"b":"\u00e9"`)) // fails midway
			}
		})
	}
	wg.Wait()
}

func FuzzDecode(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Add(readFile(f, "testdata/webhook_1k.json"))
	f.Add(benchPayload)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSame(t, data)
	})
}
