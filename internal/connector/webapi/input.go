package webapi

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// TypeName names the JSON type of an input value for error messages:
// "null", "string", "bool", "number", "object" or "array".
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64, json.Number, int, int64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// OptionalString reads an optional string input; null is "".
func OptionalString(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("want a string, got %s", TypeName(v))
}

// OptionalObject reads an optional object input; null is a nil map.
func OptionalObject(v any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want an object, got %s", TypeName(v))
	}
	return m, nil
}

// ScalarString formats a JSON scalar (string, bool or number) as text; ok
// is false for objects and arrays. null is accepted and yields "": callers
// decide whether to skip it.
func ScalarString(v any) (s string, ok bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}
