package httpcall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

const (
	// snippetLen is how much of an error response goes into the error text.
	snippetLen = 200
)

// transportError reports a failure to get a response. It is transient: the
// connection broke, timed out or ctx ended. token is the access token the
// request carried, if any, and is redacted too.
func (s *system) transportError(ctx context.Context, display, token string, err error) error {
	// The cause stays reachable for errors.Is and errors.As.
	err = webapi.TransportCause(ctx, err)
	return webapi.Redacted(s.redact(display+": "+err.Error(), token), err)
}

// readResponse reads at most webapi.MaxBody bytes of resp, closes it, and
// classifies the outcome by status. token is the access token the request carried, if
// any, redacted from error messages.
func (s *system) readResponse(ctx context.Context, display, token string, resp *http.Response) (connector.Result, error) {
	res, truncated, readErr := webapi.ReadResponse(resp)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil {
			// The call may have taken effect; a retry sends the same
			// Idempotency-Key, so retrying is safe for servers that honour it.
			return res, s.transportError(ctx, display+": read response", token, readErr)
		}
		res.Output = decodeOutput(resp, res.Body, truncated)
		return res, nil
	}
	return res, s.statusError(display, token, resp, res.Body)
}

// statusError classifies a non-2xx response: statuses a retry can fix are
// transient (honouring Retry-After), all others, 3xx included, permanent.
// The system's permanent_statuses and transient_statuses override that.
func (s *system) statusError(display, token string, resp *http.Response, body []byte) error {
	msg := webapi.StatusMessage(display, resp.StatusCode)
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
	return webapi.RetryAfter(resp.Header, err)
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

// snippet returns the start of body on one line, for error messages.
func snippet(body string) string {
	if len(body) > snippetLen {
		body = strings.ToValidUTF8(body[:snippetLen], "")
	}
	return webapi.Squeeze(body)
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
		if v, err := webapi.DecodeJSON(body); err == nil {
			return v
		}
	}
	return string(body)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
