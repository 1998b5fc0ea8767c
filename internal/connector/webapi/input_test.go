package webapi

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTypeName(t *testing.T) {
	t.Parallel()

	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"},
		{"x", "string"},
		{true, "bool"},
		{1.5, "number"},
		{json.Number("1"), "number"},
		{7, "number"},
		{int64(7), "number"},
		{map[string]any{}, "object"},
		{[]any{}, "array"},
		{struct{}{}, "struct {}"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, TypeName(tt.v), "%#v", tt.v)
	}
}

func TestOptionalString(t *testing.T) {
	t.Parallel()

	tests := []struct {
		v       any
		want    string
		wantErr string
	}{
		{nil, "", ""},
		{"", "", ""},
		{"hi", "hi", ""},
		{json.Number("1"), "", "want a string, got number"},
		{[]any{"a"}, "", "want a string, got array"},
	}
	for _, tt := range tests {
		got, err := OptionalString(tt.v)
		if tt.wantErr != "" {
			require.EqualError(t, err, tt.wantErr)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

func TestOptionalObject(t *testing.T) {
	t.Parallel()

	tests := []struct {
		v       any
		want    map[string]any
		wantErr string
	}{
		{nil, nil, ""},
		{map[string]any{}, map[string]any{}, ""},
		{map[string]any{"a": 1}, map[string]any{"a": 1}, ""},
		{[]any{"a"}, nil, "want an object, got array"},
		{"a=b", nil, "want an object, got string"},
	}
	for _, tt := range tests {
		got, err := OptionalObject(tt.v)
		if tt.wantErr != "" {
			require.EqualError(t, err, tt.wantErr)
			require.Nil(t, got)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

func TestScalarString(t *testing.T) {
	t.Parallel()

	tests := []struct {
		v      any
		want   string
		wantOK bool
	}{
		{nil, "", true},
		{"x", "x", true},
		{false, "false", true},
		{json.Number("12345678901234567890"), "12345678901234567890", true},
		{1e21, "1000000000000000000000", true},
		{0.5, "0.5", true},
		{42, "42", true},
		{int64(-3), "-3", true},
		{map[string]any{}, "", false},
		{[]any{1}, "", false},
	}
	for _, tt := range tests {
		got, ok := ScalarString(tt.v)
		require.Equal(t, tt.wantOK, ok, "%#v", tt.v)
		require.Equal(t, tt.want, got, "%#v", tt.v)
	}
}
