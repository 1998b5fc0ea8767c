// Package webapi holds the helpers every HTTP-based connector uses: reading
// and capping responses, Retry-After, redaction, error classification and
// input decoding. It is not a connector and registers nothing.
package webapi

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

const (
	// MaxBody is how much of a response is kept in Result.Body and decoded.
	MaxBody = 64 << 10
	// maxDrain bounds how much more is read and discarded so the connection
	// can be reused; a larger rest is cut off by closing it instead.
	maxDrain = 256 << 10
)

// ReadResponse reads at most MaxBody bytes of resp's body into a Result
// with resp's status, then discards up to 256 KiB more and closes the body
// so the connection can be reused. truncated reports that the body was
// longer than MaxBody. err is set only when reading failed; res holds what
// was read until then.
func ReadResponse(resp *http.Response) (res connector.Result, truncated bool, err error) {
	defer Discard(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	truncated = len(body) > MaxBody
	if truncated {
		body = body[:MaxBody]
	}
	return connector.Result{Status: resp.StatusCode, Body: body}, truncated, err
}

// Discard reads what is left of resp's body, up to 256 KiB, and closes it,
// so the connection can be reused; a larger rest is cut off by closing.
func Discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
}

// DecodeJSON decodes exactly one JSON value, keeping numbers as json.Number
// so large integer ids survive: the values jq works on, as transform.Decode
// makes them (the same as encoding/json's, with a fraction of its CPU and
// allocations; a response is decoded on every call).
func DecodeJSON(body []byte) (any, error) { return transform.Decode(body) }

// StatusMessage starts the error text for a non-2xx answer:
// "display: 503 Service Unavailable" (the status text only when known).
func StatusMessage(display string, status int) string {
	msg := display + ": " + strconv.Itoa(status)
	if text := http.StatusText(status); text != "" {
		msg += " " + text
	}
	return msg
}

// Transient reports whether a retry can fix an answer with this status: the
// request timed out (408), came too early (425) or the server failed (5xx).
// 429 is left to the caller, which knows the upstream's rate-limit headers.
func Transient(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooEarly || status >= 500
}

// RetryAfter marks the transient err to be retried after the wait h's
// Retry-After asks for; without a usable Retry-After, err is returned as it
// is and retries with backoff.
func RetryAfter(h http.Header, err error) error {
	if d, ok := ParseRetryAfter(h.Get("Retry-After"), time.Now()); ok {
		return connector.RetryAfter(d, err)
	}
	return err
}

// ParseRetryAfter reads a Retry-After value, delay-seconds or HTTP-date
// (RFC 9110 section 10.2.3). Dates in the past and negative delays mean 0;
// delays too long for a time.Duration are capped.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		switch {
		case n < 0:
			return 0, true
		case n > maxSeconds || err != nil:
			return time.Duration(maxSeconds) * time.Second, true
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
