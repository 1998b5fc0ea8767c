package connector

import (
	"errors"
	"net/http"
	"time"

	"github.com/switchboard-dev/switchboard/internal/limit"
)

// PermanentError marks a failure that retrying cannot fix (a 400, an invalid
// input, a host outside the system's base URL). The run is dead-lettered.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the executor dead-letters the run without retrying.
func Permanent(err error) error { return &PermanentError{Err: err} }

// RetryAfterError is a transient failure whose remote side said when to retry
// (HTTP 429 or 503 with Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so the executor waits at least d (capped by the
// step's backoff cap) before the next attempt.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{After: d, Err: err} }

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterOf returns the wait the remote side asked for, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}

// GateOutcome maps a call's result to what the system's gate (its rate,
// concurrency and circuit) learns: throttled with the Retry-After of a
// 429, unauthorized for a 401 or 403, refused for another permanent
// error, failed for a transient one.
func GateOutcome(status int, err error) (limit.Outcome, time.Duration) {
	switch {
	case err == nil:
		return limit.Succeeded, 0
	case status == http.StatusTooManyRequests:
		ra, _ := RetryAfterOf(err)
		return limit.Throttled, ra
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return limit.Unauthorized, 0
	case IsPermanent(err):
		return limit.Refused, 0
	}
	return limit.Failed, 0
}
