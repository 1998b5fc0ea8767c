package poll

import (
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/echo"
)

// Same reports whether two field values, as jq gave them from the owner's
// and the mirror's record, are the same value. Two systems rarely store a
// value the same way, so both are first put in a canonical form:
//
//   - null, a missing field, "" (or only white space), [] and {} are all
//     "no value";
//   - strings lose surrounding white space and are otherwise compared
//     exactly (case included: lower-case in jq to ignore it);
//   - numbers are compared by exact decimal value: 5, 5.0 and 5e0 agree,
//     and two long ids that differ in the last digit differ (no float64);
//   - a string holding exactly a JSON number or boolean equals that number
//     or boolean: "5" = 5, "19.90" = 19.9, "true" = true (systems such as
//     HubSpot return every property as a string); "05" is not a JSON
//     number, so it stays a string and differs from 5;
//   - a string that is an RFC 3339 time is that instant:
//     "2026-03-02T10:00:00+01:00" = "2026-03-02T09:00:00Z";
//   - objects are compared member by member (a member with no value is as
//     good as absent), lists element by element in order.
func Same(owner, mirror any) bool {
	return reflect.DeepEqual(canonical(owner), canonical(mirror))
}

// number is a canonical number: its sign, significant digits and the
// exponent of the last digit (120 is {"", "12", 1}).
type number struct {
	neg    bool
	digits string
	exp    int
}

// instant is a canonical RFC 3339 time, in UTC.
type instant string

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// canonical returns v in the form Same compares (nil for no value): the
// objects and lists as echo.Walk shapes them, with these leaves.
func canonical(v any) any { return echo.Walk(v, canonicalValue) }

// canonicalValue is canonical for a value that is not an object or a list.
func canonicalValue(v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		s := strings.TrimSpace(v)
		switch {
		case s == "":
			return nil
		case s == "true" || s == "false":
			return s == "true"
		case jsonNumber.MatchString(s):
			if n, ok := parseNumber(s); ok {
				return n
			}
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return instant(t.UTC().Format(time.RFC3339Nano))
		}
		return s
	case bool:
		return v
	case json.Number:
		return numberOf(v.String())
	case int:
		return numberOf(strconv.Itoa(v))
	case int64:
		return numberOf(strconv.FormatInt(v, 10))
	case float64:
		return numberOf(strconv.FormatFloat(v, 'g', -1, 64))
	case *big.Int:
		return numberOf(v.String())
	}
	// Not a value jq produces; compare its JSON text.
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%T:%v", v, v)
	}
	return string(b)
}

// numberOf is the canonical form of a number's text; text that is not a
// JSON number (NaN, an infinity) stays text.
func numberOf(s string) any {
	if n, ok := parseNumber(s); ok {
		return n
	}
	return s
}

// parseNumber parses a JSON number (also one with an exponent sign such
// as 1e+21, as Go formats floats) into its canonical form, exactly.
func parseNumber(s string) (number, bool) {
	if !jsonNumber.MatchString(s) {
		return number{}, false
	}
	var n number
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		n.neg, s = true, rest
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		e, err := strconv.Atoi(expText)
		if err != nil || e > 1<<30 || e < -1<<30 {
			return number{}, false // an absurd exponent: leave as text
		}
		n.exp = e
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := whole + frac
	n.exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	n.exp += len(digits) - len(trimmed)
	n.digits = strings.TrimLeft(trimmed, "0")
	if n.digits == "" {
		return number{digits: "0"}, true // 0, -0, 0.000 are one zero
	}
	return n, true
}
