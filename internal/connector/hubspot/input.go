package hubspot

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

// inputs reads a step's `with:` values. The first problem is kept in err and
// names the input; later reads are no-ops, so builders read every input and
// check err once.
type inputs struct {
	m   map[string]any
	err error
}

func (in *inputs) fail(name string, err error) {
	if in.err == nil {
		in.err = fmt.Errorf("input %q: %w", name, err)
	}
}

// checkKnown rejects inputs the action does not accept: a misspelt key
// would otherwise be dropped silently.
func (in *inputs) checkKnown(accepted []string) {
	for _, k := range slices.Sorted(maps.Keys(in.m)) {
		if !slices.Contains(accepted, k) {
			in.fail(k, fmt.Errorf("unknown input (accepted: %s)", strings.Join(accepted, ", ")))
		}
	}
}

// str reads a string. null counts as absent.
func (in *inputs) str(name string, required bool) string {
	switch v := in.m[name].(type) {
	case nil:
	case string:
		if v != "" || !required {
			return v
		}
	default:
		in.fail(name, fmt.Errorf("want a string, got %s", webapi.TypeName(v)))
		return ""
	}
	if required {
		in.fail(name, errors.New("required"))
	}
	return ""
}

// id reads an object id: HubSpot ids are strings of digits, but jq yields
// them as numbers when they came as numbers.
func (in *inputs) id(name string, required bool) string {
	v := in.m[name]
	if v == nil {
		if required {
			in.fail(name, errors.New("required"))
		}
		return ""
	}
	if s, ok := v.(string); ok {
		switch {
		case s == "" && required:
			in.fail(name, errors.New("required"))
		case s == "." || s == "..":
			// An id goes into the request's path, where these would name
			// another endpoint (url.PathEscape leaves them as they are).
			in.fail(name, fmt.Errorf("%q is not an id", s))
			return ""
		}
		return s
	}
	if s, ok := integerString(v); ok {
		return s
	}
	in.fail(name, fmt.Errorf("want a string or an integer, got %s", webapi.TypeName(v)))
	return ""
}

// properties reads an object of CRM property values. HubSpot takes every
// value as a string, so numbers and bools are formatted, null becomes ""
// (which clears the property) and a list of scalars becomes the
// semicolon-separated form of multi-select properties.
func (in *inputs) properties(name string, required bool) map[string]string {
	v := in.m[name]
	if v == nil {
		if required {
			in.fail(name, errors.New("required"))
		}
		return map[string]string{}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		in.fail(name, fmt.Errorf("want an object, got %s", webapi.TypeName(v)))
		return nil
	}
	out := make(map[string]string, len(obj))
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		s, err := propertyValue(obj[k])
		if err != nil {
			in.fail(name, fmt.Errorf("key %q: %w", k, err))
			return nil
		}
		out[k] = s
	}
	return out
}

func propertyValue(v any) (string, error) {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, item := range list {
			s, ok := webapi.ScalarString(item)
			if !ok || item == nil {
				return "", fmt.Errorf("list items must be strings, numbers or bools, got %s", webapi.TypeName(item))
			}
			parts[i] = s
		}
		return strings.Join(parts, ";"), nil
	}
	if s, ok := webapi.ScalarString(v); ok {
		return s, nil
	}
	return "", fmt.Errorf("want a string, number, bool, null or a list of them, got %s", webapi.TypeName(v))
}

// timestamp reads an instant for hs_timestamp: an RFC 3339 string or a Unix
// time in milliseconds (number or digits), the two forms HubSpot accepts.
// Absent, it is now.
func (in *inputs) timestamp(name string, now time.Time) string {
	v := in.m[name]
	if v == nil {
		return now.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	if s, ok := v.(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return s
		}
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return s
		}
		in.fail(name, fmt.Errorf("want an RFC 3339 time such as 2025-01-31T09:00:00Z or Unix milliseconds, got %q", s))
		return ""
	}
	if s, ok := integerString(v); ok {
		return s
	}
	in.fail(name, fmt.Errorf("want an RFC 3339 string or Unix milliseconds, got %s", webapi.TypeName(v)))
	return ""
}

// integerString formats an integral number; json.Number keeps ids beyond
// 2^53 exact.
func integerString(v any) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		if _, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			return v.String(), true
		}
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatFloat(v, 'f', -1, 64), true
		}
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}
