package alert

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// deadInput is the QueueStats an evaluation already read, with the
// RunDead count and time from before it was read.
type deadInput struct {
	queues []store.FlowStats
	seq    uint64
	now    time.Time
}

// updateDead sends the reminders of this node's dead-letter alerts and
// resolves those whose flow has no dead run left. With in nil it reads
// QueueStats itself, and only if such an alert is active.
func (m *Manager) updateDead(ctx context.Context, in *deadInput) error {
	m.mu.Lock()
	var keys []key
	for k := range m.alerts {
		if m.set.Rules[k.rule].Kind == rule.DeadLetter {
			keys = append(keys, k)
		}
	}
	seq := m.deadSeq
	m.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	if in == nil {
		now := m.cfg.NowFunc()
		queues, err := m.cfg.Stats.QueueStats(ctx)
		if err != nil {
			return err
		}
		in = &deadInput{queues: queues, seq: seq, now: now}
	}
	dead := map[string]int{}
	for _, q := range in.queues {
		dead[q.Flow] = q.Dead
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.rule, b.rule), cmp.Compare(a.subject, b.subject))
	})
	var out []notification
	m.mu.Lock()
	for _, k := range keys {
		a, r := m.alerts[k], m.set.Rules[k.rule]
		switch {
		case a == nil:
			// Resolved meanwhile by the other caller.
		case dead[k.subject] == 0 && a.seq <= in.seq:
			delete(m.alerts, k)
			out = append(out, m.deadResolved(r, k.subject, a, in.now))
		case dead[k.subject] == 0:
			// A run died after QueueStats was read: the next check sees it.
		case in.now.Sub(a.sent) >= m.set.RemindEvery:
			out = append(out, m.deadReminder(r, a, dead[k.subject], in.now))
			a.sent, a.newDead = in.now, 0
		}
	}
	// Queued under mu, in step with RunDead, so a flow's notifications
	// reach each target in the order of its alert's transitions.
	for _, n := range out {
		m.enqueue(n)
	}
	m.mu.Unlock()
	return nil
}

func deadDetails(d DeadLetter) map[string]any {
	return map[string]any{
		"flow": d.Flow, "source": d.Source, "step": d.Step, "system": d.System,
		"attempts": d.Attempts, "error": d.Error, "run_id": d.RunID, "event_id": d.EventID,
	}
}

// deadFiring is the notification of the first dead run of a flow.
func (m *Manager) deadFiring(r rule.Rule, d DeadLetter, now time.Time) notification {
	return notification{
		state: firing, rule: r.Kind, subject: d.Flow, startedAt: now, at: now,
		summary: fmt.Sprintf("run %s of flow %s is dead after %s at step %s%s: %s",
			d.RunID, d.Flow, plural(d.Attempts, "attempt"), d.Step, systemSuffix(d.System), truncate(d.Error, maxErrorLen)),
		details: deadDetails(d), dead: &d, link: m.link(d.RunID),
	}
}

// deadReminder is the reminder of a dead-letter alert: how many dead runs
// the flow has, how many died since the last notification, and the latest.
func (m *Manager) deadReminder(r rule.Rule, a *active, dead int, now time.Time) notification {
	d := a.dead
	since := ""
	if a.newDead > 0 {
		since = fmt.Sprintf("; %d more died since the last notice", a.newDead)
	}
	details := deadDetails(d)
	details["dead_runs"], details["new_dead_runs"] = dead, a.newDead
	return notification{
		state: firing, reminder: true, rule: r.Kind, subject: d.Flow, startedAt: a.since, at: now,
		summary: fmt.Sprintf("flow %s still has %s%s (latest: run %s at step %s%s: %s)",
			d.Flow, plural(dead, "dead run"), since, d.RunID, d.Step, systemSuffix(d.System), truncate(d.Error, maxErrorLen)),
		details: details, dead: &d, link: m.link(d.RunID),
	}
}

// deadResolved announces that a flow's dead runs were all retried or
// replayed (or expired).
func (m *Manager) deadResolved(r rule.Rule, flow string, a *active, now time.Time) notification {
	return notification{
		state: resolved, rule: r.Kind, subject: flow, startedAt: a.since, at: now,
		summary: fmt.Sprintf("flow %s has no dead runs left (retried or replayed)", flow),
		details: map[string]any{"flow": flow, "dead_runs": 0}, link: m.link(""),
	}
}

func systemSuffix(system string) string {
	if system == "" {
		return ""
	}
	return " (system " + system + ")"
}
