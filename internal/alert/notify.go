package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
)

// state is what a notification announces.
type state string

const (
	firing   state = "firing"
	resolved state = "resolved"
	// reminder is a firing notification sent again; only reconcile uses it.
	reminder state = "reminder"
)

// notification is one message to every target.
type notification struct {
	state    state // firing or resolved
	reminder bool
	rule     rule.Kind
	subject  string
	summary  string
	details  map[string]any
	// startedAt is when the condition was first seen; at is now.
	startedAt time.Time
	at        time.Time
	// dead is the dead run, for dead_letter notifications.
	dead *DeadLetter
	// link is the console URL to open, or "".
	link string
}

// notify builds the notification of a threshold alert's transition.
func (m *Manager) notify(s state, r rule.Rule, o observation, a *active, now time.Time) notification {
	n := notification{
		state: s, rule: r.Kind, subject: o.subject, summary: o.summary, details: o.details,
		startedAt: a.since, at: now, link: m.link(""),
	}
	if s == reminder {
		n.state, n.reminder = firing, true
	}
	return n
}

// link is the console page of a run, or the console's front page.
func (m *Manager) link(runID string) string {
	switch {
	case m.set.ConsoleURL == "":
		return ""
	case runID == "":
		return m.set.ConsoleURL + "/console"
	}
	return m.set.ConsoleURL + "/console/runs/" + url.PathEscape(runID)
}

// enqueue hands n to every target's queue without blocking: a full queue
// drops it, with an error log and a count. It does not take mu, so callers
// may hold it to keep their notifications in order.
func (m *Manager) enqueue(n notification) {
	attrs := []any{"state", n.state, "rule", n.rule, "subject", n.subject}
	if n.reminder {
		attrs = append(attrs, "reminder", true)
	}
	if n.dead != nil {
		// A run's error may quote the payload: it is logged by the
		// executor, at error level, not again here.
		attrs = append(attrs, "run_id", n.dead.RunID)
	} else {
		attrs = append(attrs, "summary", n.summary)
	}
	m.log.Info("alert", attrs...)
	for _, s := range m.senders {
		select {
		case s.queue <- n:
		default:
			m.dropped.Add(1)
			m.log.Error("alert notification dropped: queue full",
				"notifier", s.target.Kind, "target", s.index, "state", n.state, "rule", n.rule, "subject", n.subject)
		}
	}
}

// sender is one target's queue; one goroutine of Deliver drains it in
// order, so a target sees an alert's FIRING before its RESOLVED.
type sender struct {
	target rule.Target
	index  int
	queue  chan notification
	// mail sends an email target's messages; nil for the other kinds.
	mail *mailer
}

func (m *Manager) sendLoop(ctx context.Context, s *sender) {
	for {
		select {
		case <-ctx.Done():
			m.flush(s, nil)
			return
		case n := <-s.queue:
			if !m.send(ctx, s, n) {
				// Stopped while sending or waiting to retry: n goes
				// first in the flush, not lost.
				m.flush(s, &n)
				return
			}
		}
	}
}

// flushWait bounds how long a stopping node keeps sending what is queued.
const flushWait = 5 * time.Second

// flush sends what is still queued when the node stops (runs that died in
// the shutdown grace, say), pending first (the notification the stop
// interrupted, if any), within flushWait; what is left is logged.
func (m *Manager) flush(s *sender, pending *notification) {
	ctx, cancel := context.WithTimeout(context.Background(), flushWait)
	defer cancel()
	for {
		n := pending
		pending = nil
		if n == nil {
			select {
			case q := <-s.queue:
				n = &q
			default:
				return
			}
		}
		if ctx.Err() != nil || !m.send(ctx, s, *n) {
			m.log.Error("alert notifications not sent at shutdown", "notifier", s.target.Kind, "target", s.index, "count", len(s.queue)+1)
			return
		}
	}
}

// send tries to deliver n to s's target, retrying transient failures with
// exponential backoff. Failures are logged with the target's kind, index
// and status (HTTP status or SMTP reply code): never its URL, headers or
// password, which are credentials. It returns false when ctx ended first
// (n neither delivered nor given up on).
func (m *Manager) send(ctx context.Context, s *sender, n notification) bool {
	once, err := m.attempt(s, n)
	if err != nil {
		m.log.Error("encode alert notification", "notifier", s.target.Kind, "rule", n.rule, "error", err)
		return true
	}
	for try := 1; ; try++ {
		status, retryAfter, err := once(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		attrs := []any{"notifier", s.target.Kind, "target", s.index, "rule", n.rule, "subject", n.subject, "try", try, "status", status}
		if status == 0 || s.mail != nil {
			// An SMTP error names the server's reply, scrubbed of the
			// password; an HTTP one would only repeat the status.
			attrs = append(attrs, "error", err.Error())
		}
		if !s.retryable(status) || try >= m.cfg.MaxTries {
			m.log.Error("alert notification failed", attrs...)
			return true
		}
		wait := m.cfg.RetryBase << (try - 1)
		if retryAfter > 0 {
			wait = retryAfter
		}
		wait = min(wait, m.cfg.RetryCap)
		m.log.Warn("alert notification failed, retrying", append(attrs, "retry_in", wait)...)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// attempt renders n for s's target once and returns the function that
// tries to deliver it: it returns the HTTP status or SMTP reply code (0
// without one), the wait the target asked for (0 if none), and an error
// that is safe to log.
func (m *Manager) attempt(s *sender, n notification) (func(context.Context) (int, time.Duration, error), error) {
	if s.mail != nil {
		msg := s.mail.message(n)
		return func(ctx context.Context) (int, time.Duration, error) {
			code, err := s.mail.send(ctx, msg)
			return code, 0, err
		}, nil
	}
	body, err := encode(s.target.Kind, n)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (int, time.Duration, error) { return m.post(ctx, s, body) }, nil
}

// retryable reports whether a send to s's target that failed with status
// may succeed later.
func (s *sender) retryable(status int) bool {
	if s.mail != nil {
		return smtpRetryable(status)
	}
	return retryable(status)
}

// retryable reports whether a failed HTTP send may succeed later: no
// response, or a status that says so.
func retryable(status int) bool {
	switch status {
	case 0, http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// post sends one request. It returns the HTTP status (0 without a
// response), the Retry-After wait if any, and an error that is safe to log.
func (m *Manager) post(ctx context.Context, s *sender, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target.URL.Reveal(), bytes.NewReader(body))
	if err != nil {
		return 0, 0, s.clean(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard-alert")
	for name, v := range s.target.Headers {
		req.Header.Set(name, v.Reveal())
	}
	resp, err := m.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, s.clean(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, 0, nil
	}
	var after time.Duration
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		after = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, after, fmt.Errorf("HTTP %d", resp.StatusCode)
}

// clean strips a transport error of the request URL (url.Error quotes it)
// and of any secret the message still contains.
func (s *sender) clean(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	secrets := []string{s.target.URL.Reveal()}
	for _, v := range s.target.Headers {
		secrets = append(secrets, v.Reveal())
	}
	if u, perr := url.Parse(s.target.URL.Reveal()); perr == nil {
		secrets = append(secrets, u.Path, u.RawQuery)
	}
	for _, v := range secrets {
		if len(v) > 1 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return errors.New(msg)
}

// encode renders n for a target kind.
func encode(kind rule.TargetKind, n notification) ([]byte, error) {
	if kind == rule.Slack {
		return json.Marshal(slackMessage(n))
	}
	return json.Marshal(webhookMessage(n))
}

// webhookPayload is the JSON document a webhook target receives.
type webhookPayload struct {
	// Status is "firing" or "resolved".
	Status string `json:"status"`
	// Reminder is true on the reminders of a firing alert.
	Reminder   bool           `json:"reminder,omitempty"`
	Rule       string         `json:"rule"`
	Subject    string         `json:"subject"`
	Summary    string         `json:"summary"`
	Details    map[string]any `json:"details"`
	ConsoleURL string         `json:"console_url,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	ResolvedAt *time.Time     `json:"resolved_at,omitempty"`
	RunID      string         `json:"run_id,omitempty"`
	EventID    string         `json:"event_id,omitempty"`
}

func webhookMessage(n notification) webhookPayload {
	p := webhookPayload{
		Status: string(n.state), Reminder: n.reminder, Rule: string(n.rule), Subject: n.subject,
		Summary: n.summary, Details: n.details, ConsoleURL: n.link, StartedAt: n.startedAt.UTC(),
	}
	if n.state == resolved {
		at := n.at.UTC()
		p.ResolvedAt = &at
	}
	if n.dead != nil {
		p.RunID, p.EventID = n.dead.RunID, n.dead.EventID
	}
	return p
}

// slackMessage is an incoming-webhook message: text for notifications
// and old clients, blocks for the channel. Both are mrkdwn, so every text
// from outside (subjects, errors) is escaped.
func slackMessage(n notification) map[string]any {
	head, icon := "FIRING", ":rotating_light:"
	switch {
	case n.state == resolved:
		head, icon = "RESOLVED", ":white_check_mark:"
	case n.reminder:
		head, icon = "STILL FIRING", ":repeat:"
	}
	title := fmt.Sprintf("%s · %s", n.rule, n.subject)
	blocks := []any{section(fmt.Sprintf("%s *%s %s*\n%s", icon, head, escape(title), escape(n.summary)))}
	if d := n.dead; d != nil {
		var fields []any
		for _, f := range [][2]string{
			{"Run", d.RunID}, {"Event", d.EventID}, {"Source", d.Source},
			{"Step", d.Step}, {"System", d.System}, {"Attempts", strconv.Itoa(d.Attempts)},
		} {
			if f[1] != "" {
				fields = append(fields, mrkdwn("*"+f[0]+"*\n"+escape(f[1])))
			}
		}
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields})
		if d.Error != "" {
			blocks = append(blocks, section("```"+escape(truncate(d.Error, maxErrorLen))+"```"))
		}
	}
	ctx := "Since " + fmtTime(n.startedAt)
	if n.state == resolved {
		ctx = fmt.Sprintf("Resolved at %s after %s", fmtTime(n.at), fmtDuration(n.at.Sub(n.startedAt)))
	}
	if n.link != "" {
		ctx += " · <" + n.link + "|Open in console>"
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{mrkdwn(ctx)}})
	return map[string]any{"text": escape(fmt.Sprintf("[%s] %s: %s", head, title, n.summary)), "blocks": blocks}
}

func section(text string) map[string]any {
	return map[string]any{"type": "section", "text": mrkdwn(text)}
}

func mrkdwn(text string) map[string]any {
	return map[string]any{"type": "mrkdwn", "text": text}
}

// escape makes text literal in Slack mrkdwn.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
