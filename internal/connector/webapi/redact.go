package webapi

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"unicode"
)

// MaxMessage is how many bytes of an upstream's error text OneLine keeps.
const MaxMessage = 300

// redactedError is an error whose text has been scrubbed of secrets.
type redactedError struct {
	msg string
	err error // nil when the cause's own text held a secret
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Redact returns an error reading msg scrubbed by r. The cause stays
// reachable for errors.Is and errors.As only when its own text holds no
// secret: a server may echo a credential in its answer, and any error in
// the chain can be printed.
func Redact(r *strings.Replacer, msg string, cause error) error {
	e := &redactedError{msg: r.Replace(msg)}
	if text := cause.Error(); r.Replace(text) == text {
		e.err = cause
	}
	return e
}

// Redacted returns an error reading msg, which the caller has already
// scrubbed of secrets, that unwraps to cause.
func Redacted(msg string, cause error) error {
	return &redactedError{msg: msg, err: cause}
}

// TransportCause returns what to report for a request that got no
// response: ctx's error when ctx ended, else err without its *url.Error
// wrapper, whose text holds the whole URL (and with it a query API key or a
// webhook's secret path).
func TransportCause(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// TransportError reports a failure to get a response as "display: cause",
// scrubbed by r (see TransportCause and Redact). It carries no outcome, so
// it is transient: the connection broke, timed out or ctx ended.
func TransportError(ctx context.Context, r *strings.Replacer, display string, err error) error {
	err = TransportCause(ctx, err)
	return Redact(r, display+": "+err.Error(), err)
}

// OneLine squeezes s onto one line of at most MaxMessage bytes, marking a
// cut with "…", for quoting an upstream's message in an error.
func OneLine(s string) string {
	if len(s) > MaxMessage {
		s = strings.ToValidUTF8(s[:MaxMessage], "") + "…"
	}
	return Squeeze(s)
}

// Squeeze puts s on one line: control characters become spaces, and runs
// of white space one space, trimmed at both ends.
func Squeeze(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
