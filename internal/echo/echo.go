// Package echo recognises our own writes coming back: it hashes the fields
// a step wrote into a fingerprint, and the same fields of an inbound
// record, after normalising both so that a system's harmless rewriting of
// a value (key order, number format, time zone, padding) still matches.
package echo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fingerprint is the hash of some named fields of a record.
type Fingerprint struct {
	// Fields are the hashed fields' names, sorted.
	Fields []string
	// Hash is the hex SHA-256 of the normalised fields.
	Hash string
}

// Of fingerprints the fields a write set: every key of written.
func Of(written map[string]any) Fingerprint {
	names := slices.Sorted(maps.Keys(written))
	return Fingerprint{Fields: names, Hash: Hash(written, names)}
}

// Hash hashes the named fields of record, normalised (see Normalize). A
// field record lacks hashes like null.
func Hash(record map[string]any, names []string) string {
	names = slices.Sorted(slices.Values(names))
	pairs := make([]any, 0, 2*len(names))
	for _, n := range names {
		pairs = append(pairs, n, Normalize(record[n]))
	}
	// Normalized values are maps (encoded with sorted keys), slices,
	// strings, float64, bool and nil: the encoding is canonical.
	b, _ := json.Marshal(pairs)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Normalize returns v in the canonical form the hash compares:
//
//   - strings lose surrounding white space; an empty string is null;
//   - a string that is an RFC 3339 time becomes that instant in UTC, so
//     "2026-03-02T10:00:00+01:00" and "2026-03-02T09:00:00.000Z" agree;
//   - numbers (json.Number, integers, floats) become float64, so 42, 42.0
//     and "42" as a JSON number agree (a number in a string stays a string);
//   - objects drop null members and compare key by key; lists keep order;
//   - null, a missing field, an empty string, an empty object and an
//     empty list are the same.
func Normalize(v any) any { return Walk(v, normalizeValue) }

// normalizeValue is Normalize for a value that is not an object or a list.
func normalizeValue(v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		s := strings.TrimSpace(v)
		if s == "" {
			return nil
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
		return s
	case json.Number:
		// Integers beyond float64's exact range keep their digits, so two
		// long ids that differ in the last digit still differ.
		if f, err := v.Float64(); err == nil && math.Abs(f) < 1<<53 {
			return number(f)
		}
		return "number:" + v.String()
	case float64:
		return number(v)
	case float32:
		return number(float64(v))
	case int:
		return integer(int64(v))
	case int64:
		return integer(v)
	case *big.Int:
		// jq's integers beyond int64 (from arithmetic; a value passed
		// through stays a json.Number): digits, as json.Number keeps them.
		if v.IsInt64() {
			return integer(v.Int64())
		}
		return "number:" + v.String()
	case bool:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return string(b)
}

// Walk returns v with leaf applied to every value that is not an object
// or a list, in the shape value comparisons share: an object drops the
// members leaf makes nil, an object or list left empty is nil, and a list
// keeps its order and its nils.
func Walk(v any, leaf func(any) any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if n := Walk(x, leaf); n != nil {
				out[k] = n
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(v) == 0 {
			return nil
		}
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = Walk(x, leaf)
		}
		return out
	}
	return leaf(v)
}

// integer is an integer as a json.Number of the same digits normalises:
// a float64 within its exact range, else the digits, so a long id that jq
// computed (.id + 0 gives an int) still matches the id a record sends.
func integer(i int64) any {
	if i > -1<<53 && i < 1<<53 {
		return float64(i)
	}
	return "number:" + strconv.FormatInt(i, 10)
}

// number keeps a float that JSON can encode (NaN and infinities cannot).
func number(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}
