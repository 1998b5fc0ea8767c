package cli

import (
	"fmt"

	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// describeSource is one line of `check` about a source: how events come
// in and how they are keyed.
func describeSource(s *flow.Source) string {
	switch {
	case s.Poll != nil:
		p := s.Poll
		out := fmt.Sprintf("poll %s GET %s %s, key: %s@%s", p.System, p.Path, p.Schedule, p.ID, versionOf(p.Version))
		if p.Backstop() {
			out += ", backstop for " + p.Target
		}
		return out
	case s.Schedule != nil:
		return "schedule " + s.Schedule.String()
	case s.Reconcile != nil:
		return describeReconcile(s.Reconcile)
	case s.Webhook == nil:
		return "?"
	}
	verify := "UNSIGNED"
	if s.Webhook.Verifier != nil {
		verify = "verify " + s.Webhook.Scheme
	}
	key := "key: body hash"
	switch {
	case s.Key != nil:
		key = "key: " + s.Key.String()
	case s.RecordID != nil && s.Version != nil:
		key = fmt.Sprintf("key: %s@%s", s.RecordID, s.Version)
	case s.Webhook.Scheme == "standard-webhooks":
		key = "key: webhook-id"
	}
	return fmt.Sprintf("POST /hooks/%s  %s, %s", s.Name, verify, key)
}

func versionOf(v *transform.Expr) string {
	if v == nil {
		return "record hash"
	}
	return v.String()
}
