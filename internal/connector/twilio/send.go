package twilio

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

var sendSMSSpec = connector.ActionSpec{
	Name:    "send_sms",
	Doc:     "Sends one SMS.",
	Outputs: "Twilio's Message resource {sid, status, to, from, …}",
	Writes:  "", // a message, not an entity with a system of record
	Inputs: []connector.Input{
		{Name: "to", Required: true, Type: connector.TypeString, Doc: "The recipient, an E.164 number such as \"+15550100\"."},
		{Name: "body", Required: true, Type: connector.TypeString, Doc: "The text, at most 1600 characters."},
		{Name: "from", Type: connector.TypeString, Doc: "The sender, overriding the system's from."},
		{Name: "messaging_service_sid", Type: connector.TypeString, Doc: "A messaging service (MG…) to send through, overriding the system's."},
		{Name: "status_callback", Type: connector.TypeString, Doc: "URL for delivery status updates, overriding the system's status_callback."},
	},
}

const (
	// defaultRateLimitWait is the wait after a rate limit without
	// Retry-After: Twilio's limits are per second.
	defaultRateLimitWait = time.Second
)

// sendSMS is the send_sms action of one system.
type sendSMS struct {
	sys *system
}

// Do sends one message. Invalid inputs are permanent errors; Twilio's
// answers are classified by classify.
func (a *sendSMS) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	form, err := a.sys.form(req.Input)
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	display := http.MethodPost + " " + a.sys.messagesAt
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.sys.messagesURL, strings.NewReader(form.Encode()))
	if err != nil {
		return connector.Result{}, connector.Permanent(fmt.Errorf("%s: build request: %w", display, err))
	}
	httpReq.Header.Set("Authorization", a.sys.auth)
	httpReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	httpReq.Header.Set("Accept", "application/json")
	httpReq.Header.Set("User-Agent", "switchboard")
	// Twilio's REST API does not deduplicate on it: a retry after a lost
	// response can send the text twice. Sending the key costs nothing.
	if req.IdempotencyKey != "" {
		httpReq.Header.Set("Idempotency-Key", req.IdempotencyKey)
	}

	resp, err := a.sys.client.Do(httpReq)
	if err != nil {
		return connector.Result{}, webapi.TransportError(ctx, a.sys.redactor, display, err)
	}
	res, truncated, readErr := webapi.ReadResponse(resp)
	if readErr != nil {
		return res, webapi.TransportError(ctx, a.sys.redactor, display+": read response", readErr)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if !truncated {
			res.Output, _ = webapi.DecodeJSON(res.Body)
		}
		return res, nil
	}
	return res, a.sys.classify(display, resp, res.Body)
}

// form builds CreateMessage's form from the step's inputs and the system's
// defaults.
func (s *system) form(in map[string]any) (url.Values, error) {
	accepted := make([]string, len(sendSMSSpec.Inputs))
	for i, inp := range sendSMSSpec.Inputs {
		accepted[i] = inp.Name
	}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if !slices.Contains(accepted, k) {
			return nil, fmt.Errorf("input %q: unknown input (accepted: %s)", k, strings.Join(accepted, ", "))
		}
	}
	get := func(name string, required bool) (string, error) {
		switch v := in[name].(type) {
		case nil:
		case string:
			if strings.TrimSpace(v) != "" {
				return v, nil
			}
		default:
			return "", fmt.Errorf("input %q: want a string, got %s", name, webapi.TypeName(v))
		}
		if required {
			return "", fmt.Errorf("input %q: required", name)
		}
		return "", nil
	}

	f := url.Values{}
	var errs []error
	for _, field := range []struct {
		input, form, fallback string
		required              bool
	}{
		{"to", "To", "", true},
		{"body", "Body", "", true},
		{"from", "From", s.from, false},
		{"messaging_service_sid", "MessagingServiceSid", s.serviceSID, false},
		{"status_callback", "StatusCallback", s.callback, false},
	} {
		v, err := get(field.input, field.required)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v = cmp.Or(v, field.fallback); v != "" {
			f.Set(field.form, v)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	switch {
	case f.Get("From") == "" && f.Get("MessagingServiceSid") == "":
		return nil, errors.New(`input "from": required, since the system sets neither from nor messaging_service_sid`)
	case f.Has("MessagingServiceSid") && !serviceSIDRe.MatchString(f.Get("MessagingServiceSid")):
		return nil, errors.New(`input "messaging_service_sid": want "MG" followed by 32 hex digits`)
	case f.Has("StatusCallback") && checkURL(f.Get("StatusCallback"), false) != nil:
		return nil, errors.New(`input "status_callback": must be an absolute http or https URL`)
	}
	return f, nil
}

// Error is Twilio's error answer: an HTTP status and a Twilio error code
// (https://www.twilio.com/docs/api/errors). Action errors wrap it, so a
// caller can branch on the code with errors.As.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is Twilio's error code, e.g. 21610; 0 when the body had none.
	Code int
	// Message is Twilio's message, e.g. "Attempt to send to unsubscribed recipient".
	Message string
}

// Error formats the status, the code with its meaning when known, and
// Twilio's message.
func (e *Error) Error() string {
	msg := strconv.Itoa(e.Status)
	if text := http.StatusText(e.Status); text != "" {
		msg += " " + text
	}
	if e.Code != 0 {
		msg += ": twilio error " + strconv.Itoa(e.Code)
		if meaning, ok := errorCodes[e.Code]; ok {
			msg += " (" + meaning + ")"
		}
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// errorCodes names the error codes send_sms meets most. All are permanent:
// the number, the sender or the account must change first.
var errorCodes = map[int]string{
	20003: "authentication failed",
	20404: "resource not found",
	21211: "invalid To number",
	21214: "To number cannot be reached",
	21408: "no permission to send to this region",
	21602: "message body required",
	21603: "From number required",
	21604: "To number required",
	21606: "From number is not valid or not SMS-capable for this account",
	21608: "trial accounts send only to verified numbers",
	21610: "recipient unsubscribed: replied STOP",
	21612: "To number cannot be reached from this From number",
	21614: "To number is not a mobile number",
	21617: "message body exceeds 1600 characters",
	20429: "too many requests",
	14107: "SMS send rate limit exceeded",
}

// rateLimitCodes are error codes a wait fixes. 14107's HTTP status is not
// documented; waiting is the safe reading of a rate limit.
var rateLimitCodes = map[int]bool{20429: true, 14107: true}

// classify turns a non-2xx answer into an error: HTTP 429 and the
// rate-limit codes wait (Retry-After, else 1s); 408, 425 and 5xx are
// transient; every other status, 3xx included, is permanent with Twilio's
// code and message.
func (s *system) classify(display string, resp *http.Response, body []byte) error {
	var payload struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &payload)
	apiErr := &Error{Status: resp.StatusCode, Code: payload.Code, Message: webapi.OneLine(s.redact(payload.Message))}
	if apiErr.Message == "" && payload.Code == 0 {
		apiErr.Message = webapi.OneLine(s.redact(string(body)))
	}
	err := fmt.Errorf("%s: %w", display, apiErr)

	switch {
	case resp.StatusCode == http.StatusTooManyRequests || rateLimitCodes[payload.Code]:
		retryAfter, ok := webapi.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			retryAfter = defaultRateLimitWait
		}
		return connector.RetryAfter(retryAfter, err)
	case webapi.Transient(resp.StatusCode):
		return webapi.RetryAfter(resp.Header, err)
	}
	return connector.Permanent(err)
}
