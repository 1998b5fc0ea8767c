package httpcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/switchboard-dev/switchboard/internal/connector"
)

const (
	// maxBody is how much of a response is kept in Result.Body and decoded.
	maxBody = 64 << 10
	// maxDrain bounds how much more is read and discarded so the connection
	// can be reused; a larger rest is cut off by closing it instead.
	maxDrain = 256 << 10
	// snippetLen is how much of an error response goes into the error text.
	snippetLen = 200
)

// redactedError is an error whose text has been scrubbed of the system's
// secrets while the cause stays reachable for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// transportError reports a failure to get a response. It is transient: the
// connection broke, timed out or ctx ended. token is the access token the
// request carried, if any, and is redacted too.
func (s *system) transportError(ctx context.Context, display, token string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	} else if ue, ok := errors.AsType[*url.Error](err); ok {
		// url.Error's text holds the whole URL, and with it a query API key.
		err = ue.Err
	}
	return &redactedError{msg: s.redact(display+": "+err.Error(), token), err: err}
}

// readResponse reads at most maxBody bytes of resp, closes it, and classifies
// the outcome by status. token is the access token the request carried, if
// any, redacted from error messages.
func (s *system) readResponse(ctx context.Context, display, token string, resp *http.Response) (connector.Result, error) {
	defer discard(resp)
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	truncated := len(body) > maxBody
	if truncated {
		body = body[:maxBody]
	}
	res := connector.Result{Status: resp.StatusCode, Body: body}

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil {
			// The call may have taken effect; a retry sends the same
			// Idempotency-Key, so retrying is safe for servers that honour it.
			return res, s.transportError(ctx, display+": read response", token, readErr)
		}
		res.Output = decodeOutput(resp, body, truncated)
		return res, nil
	}
	return res, s.statusError(display, token, resp, body)
}

// statusError classifies a non-2xx response: statuses a retry can fix are
// transient (honouring Retry-After), all others, 3xx included, permanent.
// The system's permanent_statuses and transient_statuses override that.
func (s *system) statusError(display, token string, resp *http.Response, body []byte) error {
	msg := display + ": " + strconv.Itoa(resp.StatusCode)
	if text := http.StatusText(resp.StatusCode); text != "" {
		msg += " " + text
	}
	if snip := snippet(s.redact(string(body), token)); snip != "" {
		msg += ": " + snip
	}
	err := errors.New(s.redact(msg, token))

	transient, custom := s.classes[resp.StatusCode]
	if !custom {
		transient = defaultTransient(resp.StatusCode)
	}
	if !transient {
		return connector.Permanent(err)
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return connector.RetryAfter(d, err)
	}
	return err
}

// defaultTransient reports whether a retry can fix a response with this
// status by default: the request timed out, came too early or too often,
// or the server failed on its side.
func defaultTransient(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// validateStatuses checks permanent_statuses and transient_statuses.
func validateStatuses(permanent, transient []int) []error {
	var errs []error
	seen := map[int]string{}
	for _, list := range []struct {
		key   string
		codes []int
	}{{"permanent_statuses", permanent}, {"transient_statuses", transient}} {
		for i, code := range list.codes {
			switch prev, dup := seen[code]; {
			case code < 100 || code > 599:
				errs = append(errs, fmt.Errorf("%s[%d]: %d is not an HTTP status (100-599)", list.key, i, code))
			case code >= 200 && code < 300:
				errs = append(errs, fmt.Errorf("%s[%d]: %d is a success and cannot be reclassified", list.key, i, code))
			case dup && prev == list.key:
				errs = append(errs, fmt.Errorf("%s[%d]: %d is listed twice", list.key, i, code))
			case dup:
				errs = append(errs, fmt.Errorf("%s[%d]: %d is also in %s", list.key, i, code, prev))
			}
			if _, dup := seen[code]; !dup {
				seen[code] = list.key
			}
		}
	}
	return errs
}

// statusClasses maps each status of permanent_statuses and
// transient_statuses to whether it is transient; nil when both are empty.
func (c *Config) statusClasses() map[int]bool {
	if len(c.PermanentStatuses)+len(c.TransientStatuses) == 0 {
		return nil
	}
	m := make(map[int]bool, len(c.PermanentStatuses)+len(c.TransientStatuses))
	for _, code := range c.PermanentStatuses {
		m[code] = false
	}
	for _, code := range c.TransientStatuses {
		m[code] = true
	}
	return m
}

// discard reads what is left of resp's body, up to maxDrain, and closes it,
// so the connection can be reused.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
}

// snippet returns the start of body on one line, for error messages.
func snippet(body string) string {
	if len(body) > snippetLen {
		body = strings.ToValidUTF8(body[:snippetLen], "")
	}
	body = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, body)
	return strings.Join(strings.Fields(body), " ")
}

// parseRetryAfter reads a Retry-After value, delay-seconds or HTTP-date
// (RFC 9110 section 10.2.3). Dates in the past and negative delays mean 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
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

// decodeOutput turns a 2xx body into the step's output: decoded JSON when the
// response says it is JSON or the body is a JSON object or array, else the
// text. A truncated body is not valid JSON or complete text, so it yields nil.
func decodeOutput(resp *http.Response, body []byte, truncated bool) any {
	if resp.StatusCode == http.StatusNoContent || len(body) == 0 || truncated {
		return nil
	}
	trimmed := bytes.TrimSpace(body)
	if isJSON(resp.Header.Get("Content-Type")) ||
		len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		if v, err := decodeJSON(body); err == nil {
			return v
		}
	}
	return string(body)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// decodeJSON decodes exactly one JSON value, keeping numbers as json.Number
// so large integer IDs survive.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode response: trailing data after JSON value")
	}
	return v, nil
}
