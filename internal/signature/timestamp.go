package signature

import (
	"fmt"
	"strconv"
	"time"
)

// checkTimestamp parses raw, a signed timestamp in whole Unix seconds, and
// checks it against now. scheme and what only label the error ("stripe",
// "header Stripe-Signature t="). Both timestamped schemes share it so that
// they accept and refuse exactly the same inputs.
func checkTimestamp(scheme, what, raw string, now time.Time, tolerance time.Duration) (time.Time, error) {
	// ParseUint rejects signs, spaces and fractions: senders send whole
	// Unix seconds and anything else is not what was signed.
	ts, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %s is not Unix seconds: %w", scheme, what, ErrMalformed)
	}
	if ts > maxTimestamp {
		return time.Time{}, fmt.Errorf("%s: %s is implausibly far in the future: %w", scheme, what, ErrExpired)
	}
	sent := time.Unix(int64(ts), 0)
	tolerance = effectiveTolerance(tolerance)
	if age := now.Sub(sent); age > tolerance {
		return time.Time{}, fmt.Errorf("%s: timestamp %d is %s old, tolerance %s: %w",
			scheme, ts, age.Round(time.Second), tolerance, ErrExpired)
	} else if age < -tolerance {
		return time.Time{}, fmt.Errorf("%s: timestamp %d is %s in the future, tolerance %s: %w",
			scheme, ts, (-age).Round(time.Second), tolerance, ErrExpired)
	}
	return sent, nil
}

// effectiveTolerance applies the 5 minute default to a zero or negative
// tolerance, so a struct literal that leaves it unset is still safe.
func effectiveTolerance(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultTolerance
	}
	return d
}
