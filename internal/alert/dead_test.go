package alert

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/store"
)

func deadRun(flow, id string) DeadLetter {
	return DeadLetter{
		RunID: id, EventID: "ev_" + id, Source: "web_form", Flow: flow, Step: "contact", System: "crm",
		Attempts: 8, Error: "HTTP 422: email is invalid <" + id + ">",
	}
}

func TestDeadLetterArrivesWithinFiveSeconds(t *testing.T) {
	t.Parallel()

	// The real thing: Deliver and Run running, the real clock, an
	// evaluation period far longer than the deadline.
	b := setup(t, bundleOpts{
		rules: []rule.Rule{{Kind: rule.DeadLetter}, {Kind: rule.QueueDepth, Depth: 1000}},
		now:   time.Now,
	})
	b.deliver(t, true)

	start := time.Now()
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_1"))
	var msg map[string]any
	select {
	case msg = <-b.hook.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no dead-letter notification within 5s")
	}
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, "run_1", msg["run_id"])
	require.Equal(t, "ev_run_1", msg["event_id"])
	require.Contains(t, msg["summary"], "HTTP 422: email is invalid <run_1>")
	select {
	case slack := <-b.slack.arrived:
		require.Contains(t, slack["text"], "run_1")
	case <-time.After(5 * time.Second):
		t.Fatal("no Slack message within 5s")
	}
}

func TestDeadLetterLifeCycle(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter}}})
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_1"))
	b.flush(t)
	msg := b.one(t)
	require.Equal(t, "firing", msg["status"])
	require.Equal(t, "dead_letter", msg["rule"])
	require.Equal(t, "lead_capture", msg["subject"])
	require.Equal(t, "run run_1 of flow lead_capture is dead after 8 attempts at step contact (system crm): HTTP 422: email is invalid <run_1>", msg["summary"])
	require.Equal(t, "https://switchboard.example.com/console/runs/run_1", msg["console_url"])
	require.Equal(t, map[string]any{
		"flow": "lead_capture", "source": "web_form", "step": "contact", "system": "crm", "attempts": 8.0,
		"error": "HTTP 422: email is invalid <run_1>", "run_id": "run_1", "event_id": "ev_run_1",
	}, msg["details"])

	// More dead runs of the same flow while it fires: counted, not sent.
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_2"))
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_3"))
	b.flush(t)
	b.none(t)
	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Dead: 3})
	b.clock.Advance(30 * time.Minute)
	b.evaluate(t)
	b.none(t)

	// Another flow is another alert.
	b.m.RunDead(t.Context(), deadRun("job_sync", "run_9"))
	b.flush(t)
	require.Equal(t, "job_sync", b.one(t)["subject"])
	b.stats.setQueue(store.FlowStats{Flow: "job_sync", Dead: 1})

	b.clock.Advance(30 * time.Minute)
	b.evaluate(t)
	msg = b.one(t) // lead_capture's reminder; job_sync fired only 30m ago
	require.Equal(t, true, msg["reminder"])
	require.Equal(t, "run_3", msg["run_id"], "the reminder names the latest dead run")
	require.Equal(t, "flow lead_capture still has 3 dead runs; 2 more died since the last notice (latest: run run_3 at step contact (system crm): HTTP 422: email is invalid <run_3>)", msg["summary"])

	// The operator retried them: RESOLVED once.
	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Waiting: 3})
	b.clock.Advance(15 * time.Second)
	b.evaluate(t)
	msg = b.one(t)
	require.Equal(t, "resolved", msg["status"])
	require.Equal(t, "lead_capture", msg["subject"])
	require.Equal(t, "flow lead_capture has no dead runs left (retried or replayed)", msg["summary"])
	b.evaluate(t)
	b.none(t)

	// The next dead run fires anew.
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_4"))
	b.flush(t)
	require.Equal(t, "run_4", b.one(t)["run_id"])
}

func TestDeadLetterNotResolvedByAStaleRead(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter}}})
	// QueueStats was read (no dead runs) before the run died.
	in := &deadInput{seq: 0, now: t0}
	b.m.RunDead(t.Context(), deadRun("f", "run_1"))
	require.NoError(t, b.m.updateDead(t.Context(), in))
	b.flush(t)
	require.Equal(t, "firing", b.one(t)["status"], "only the FIRING, no RESOLVED")
}

func TestDeadLetterRuleOfOneFlow(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.DeadLetter, Flow: "billing"}}})
	b.m.RunDead(t.Context(), deadRun("lead_capture", "run_1"))
	b.flush(t)
	b.none(t)
	b.m.RunDead(t.Context(), deadRun("billing", "run_2"))
	b.flush(t)
	require.Equal(t, "billing", b.one(t)["subject"])
}

func TestInertManager(t *testing.T) {
	t.Parallel()

	m, err := New(Config{})
	require.NoError(t, err)
	m.RunDead(t.Context(), deadRun("f", "r"))
	m.ObserveLag("f", time.Second)
	require.NoError(t, m.Evaluate(t.Context()))
}

func TestNewRequiresStats(t *testing.T) {
	t.Parallel()

	_, err := New(Config{Alerts: &rule.Set{Rules: []rule.Rule{{Kind: rule.DeadLetter}}}})
	require.ErrorContains(t, err, "Stats is required")
}
