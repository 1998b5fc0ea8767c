package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
	// maxDrain bounds how much more is read so the connection can be reused.
	maxDrain = 256 << 10
	// maxMessage caps Slack's error text in errors.
	maxMessage = 300
)

// readResponse reads at most maxBody bytes of resp and closes it. Its error
// is set only when reading failed (transient).
func (s *system) readResponse(ctx context.Context, display string, resp *http.Response) (connector.Result, error) {
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
		_ = resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if len(body) > maxBody {
		body = body[:maxBody]
	}
	res := connector.Result{Status: resp.StatusCode, Body: body}
	if err != nil {
		return res, s.transportError(ctx, display+": read response", err)
	}
	return res, nil
}

// transportError reports a failure to get a response: transient. The
// url.Error's text would hold the webhook URL, so only its cause is kept.
func (s *system) transportError(ctx context.Context, display string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	} else if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return redactErr(s.redactor, display+": "+err.Error(), err)
}

// redactedError is an error whose text has been scrubbed of secrets.
type redactedError struct {
	msg string
	err error // nil when the cause's own text held a secret
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr scrubs secrets from msg. The cause stays reachable for
// errors.Is and errors.As only when its own text holds none: a server may
// echo a credential in its answer, and any error in the chain can be
// printed.
func redactErr(r *strings.Replacer, msg string, cause error) error {
	e := &redactedError{msg: r.Replace(msg)}
	if text := cause.Error(); r.Replace(text) == text {
		e.err = cause
	}
	return e
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

// decodeJSON decodes one JSON value, keeping numbers as json.Number.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// oneLine squeezes s onto one line of at most maxMessage bytes.
func oneLine(s string) string {
	if len(s) > maxMessage {
		s = strings.ToValidUTF8(s[:maxMessage], "") + "…"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

func typeName(v any) string {
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
