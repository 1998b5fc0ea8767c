package hubspot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

// do sends c and classifies the answer.
func (s *system) do(ctx context.Context, c call, idempotencyKey string) (connector.Result, error) {
	display := c.method + " " + c.path
	u := s.base + c.path
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	var rd io.Reader
	if c.body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(c.body); err != nil {
			return connector.Result{}, connector.Permanent(fmt.Errorf("%s: encode body: %w", display, err))
		}
		// A *bytes.Reader lets net/http resend the body when a stale
		// keep-alive connection fails before any response.
		rd = bytes.NewReader(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u, rd)
	if err != nil {
		return connector.Result{}, connector.Permanent(fmt.Errorf("%s: build request: %w", display, err))
	}
	req.Header.Set("Authorization", s.auth)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "switchboard")
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// HubSpot's CRM API does not document Idempotency-Key; sending it costs
	// nothing and lets a proxy or a future API version drop repeats.
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}

	resp, err := s.client.Do(req)
	if err != nil {
		return connector.Result{}, webapi.TransportError(ctx, s.redactor, display, err)
	}
	res, truncated, readErr := webapi.ReadResponse(resp)
	if readErr != nil {
		// The call may have taken effect; the retry is as safe as any.
		return res, webapi.TransportError(ctx, s.redactor, display+": read response", readErr)
	}
	return s.classify(res, display, c, resp.Header, truncated)
}

// classify turns HubSpot's answer into the step's output or error:
//
//   - 2xx succeeds with the decoded JSON (for a batch call, its first
//     result; a per-item error in the batch is classified like a 4xx).
//   - 409 on a create whose message gives the existing object's id succeeds
//     with {id, existing: true} (see conflictOutput).
//   - 429 is transient and waits as long as Retry-After or HubSpot's
//     rate-limit headers say (see rateLimitWait); 408, 425 and 5xx are
//     transient, honouring Retry-After.
//   - Every other status, 3xx included, is permanent with HubSpot's message.
func (s *system) classify(res connector.Result, display string, c call, h http.Header, truncated bool) (connector.Result, error) {
	status := res.Status
	if status >= 200 && status < 300 {
		if len(res.Body) == 0 || status == http.StatusNoContent {
			return res, nil
		}
		out, err := webapi.DecodeJSON(res.Body)
		if err != nil || truncated {
			// The write happened; only its answer is unreadable. Retrying
			// could write twice, so the step succeeds with no output.
			return res, nil
		}
		if !c.batch {
			res.Output = out
			return res, nil
		}
		return s.batchResult(res, display, c, out)
	}

	errBody := parseError(res.Body)
	if status == http.StatusConflict && c.create {
		if out, ok := conflictOutput(errBody.Message); ok {
			res.Output = out
			return res, nil
		}
	}
	msg := webapi.StatusMessage(display, status)
	if errBody.Category != "" {
		msg += " (" + errBody.Category + ")"
	}
	if detail := cmp.Or(errBody.Message, string(res.Body)); detail != "" {
		msg += ": " + webapi.OneLine(s.redact(detail))
	}
	err := errors.New(s.redact(msg))

	switch status {
	case http.StatusTooManyRequests:
		if d, ok := rateLimitWait(h, time.Now()); ok {
			return res, connector.RetryAfter(d, err)
		}
		return res, err
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return res, webapi.RetryAfter(h, err)
	}
	if status >= 500 {
		return res, err
	}
	return res, connector.Permanent(err)
}

// batchResult picks the one result of a single-input batch call. HubSpot
// answers 207 (or 200) with the item's error in "errors" when it failed.
func (s *system) batchResult(res connector.Result, display string, c call, out any) (connector.Result, error) {
	obj, _ := out.(map[string]any)
	if results, _ := obj["results"].([]any); len(results) > 0 {
		res.Output = results[0]
		return res, nil
	}
	if errs, _ := obj["errors"].([]any); len(errs) > 0 {
		item, _ := errs[0].(map[string]any)
		message, _ := item["message"].(string)
		category, _ := item["category"].(string)
		if c.create && category == "CONFLICT" {
			if out, ok := conflictOutput(message); ok {
				res.Output = out
				return res, nil
			}
		}
		msg := fmt.Sprintf("%s: %d: batch item failed", display, res.Status)
		if category != "" {
			msg += " (" + category + ")"
		}
		if message != "" {
			msg += ": " + webapi.OneLine(s.redact(message))
		}
		return res, connector.Permanent(errors.New(s.redact(msg)))
	}
	return res, connector.Permanent(fmt.Errorf("%s: %d: batch answer has neither results nor errors", display, res.Status))
}

// existingIDRe finds the id in HubSpot's conflict message, e.g.
// "Contact already exists. Existing ID: 123".
var existingIDRe = regexp.MustCompile(`already exists\. Existing ID: ?(\d+)`)

// conflictOutput turns HubSpot's "already exists" conflict into success.
//
// Why: HubSpot ignores Idempotency-Key, so when a create's response is lost
// (timeout, dropped connection) the retry finds the object our first attempt
// made; a concurrent flow can also have made it a moment earlier. Either
// way the state the step asked for holds. Dead-lettering would alert an
// operator for nothing and stop the run before steps that need the id, so
// the step succeeds and outputs {id, existing: true} instead.
func conflictOutput(message string) (map[string]any, bool) {
	m := existingIDRe.FindStringSubmatch(message)
	if m == nil {
		return nil, false
	}
	return map[string]any{"id": m[1], "existing": true}, true
}

// errorBody is HubSpot's error JSON (the spec's Error schema).
type errorBody struct {
	Message  string `json:"message"`
	Category string `json:"category"`
}

func parseError(body []byte) errorBody {
	var e errorBody
	_ = json.Unmarshal(body, &e)
	return e
}

// rateLimitWait says how long to wait after a 429: Retry-After when
// present, else the rest of HubSpot's rate-limit window when the response
// says none of it is left (X-HubSpot-RateLimit-Remaining: 0 with
// X-HubSpot-RateLimit-Interval-Milliseconds, or the per-second limit's
// X-HubSpot-RateLimit-Secondly-Remaining: 0).
func rateLimitWait(h http.Header, now time.Time) (time.Duration, bool) {
	if d, ok := webapi.ParseRetryAfter(h.Get("Retry-After"), now); ok {
		return d, true
	}
	if strings.TrimSpace(h.Get("X-HubSpot-RateLimit-Remaining")) == "0" {
		ms, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-HubSpot-RateLimit-Interval-Milliseconds")), 10, 64)
		if err == nil && ms > 0 && ms <= int64(time.Hour/time.Millisecond) {
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	if strings.TrimSpace(h.Get("X-HubSpot-RateLimit-Secondly-Remaining")) == "0" {
		return time.Second, true
	}
	return 0, false
}
