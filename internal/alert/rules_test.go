package alert

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/store"
)

func TestQueueDepthLifeCycle(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.QueueDepth, Flow: "lead_capture", Depth: 1000, For: 5 * time.Minute}}})
	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Waiting: 1532})

	b.evaluate(t)
	b.none(t) // pending: above, but not for 5m yet
	b.clock.Advance(4 * time.Minute)
	b.evaluate(t)
	b.none(t)

	b.clock.Advance(time.Minute)
	b.evaluate(t)
	msg := b.one(t)
	require.Equal(t, "firing", msg["status"])
	require.Equal(t, "queue_depth", msg["rule"])
	require.Equal(t, "lead_capture", msg["subject"])
	require.Equal(t, "queue depth of flow lead_capture is 1,532 (above 1,000 for 5m)", msg["summary"])
	require.Equal(t, "https://switchboard.example.com/console", msg["console_url"])
	require.Equal(t, t0.Format(time.RFC3339), msg["started_at"], "started when the depth was first seen above")
	require.Equal(t, map[string]any{"flow": "lead_capture", "waiting": 1532.0, "above": 1000.0, "for_seconds": 300.0}, msg["details"])
	require.NotContains(t, msg, "reminder")

	// Still above: deduplicated until remind_every has passed.
	for range 3 {
		b.clock.Advance(15 * time.Minute)
		b.evaluate(t)
		b.none(t)
	}
	b.clock.Advance(15 * time.Minute)
	b.evaluate(t)
	msg = b.one(t)
	require.Equal(t, "firing", msg["status"])
	require.Equal(t, true, msg["reminder"])

	b.stats.setQueue(store.FlowStats{Flow: "lead_capture", Waiting: 12})
	b.clock.Advance(15 * time.Second)
	b.evaluate(t)
	msg = b.one(t)
	require.Equal(t, "resolved", msg["status"])
	require.Equal(t, "queue depth of flow lead_capture is 12 (limit 1,000)", msg["summary"])
	require.Equal(t, b.clock.Now().Format(time.RFC3339), msg["resolved_at"])

	b.clock.Advance(time.Hour)
	b.evaluate(t)
	b.none(t) // resolved once
}

func TestQueueDepthDipWhilePendingStartsOver(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.QueueDepth, Depth: 100, For: 5 * time.Minute}}})
	b.stats.setQueue(store.FlowStats{Flow: "f", Waiting: 150})
	b.evaluate(t)
	b.clock.Advance(4 * time.Minute)
	b.stats.setQueue(store.FlowStats{Flow: "f", Waiting: 50})
	b.evaluate(t)
	b.stats.setQueue(store.FlowStats{Flow: "f", Waiting: 150})
	b.clock.Advance(time.Minute)
	b.evaluate(t)
	b.clock.Advance(4 * time.Minute)
	b.evaluate(t)
	b.none(t) // never above for 5m in a row, and a pending alert resolves silently
	b.clock.Advance(time.Minute)
	b.evaluate(t)
	require.Equal(t, "firing", b.one(t)["status"])
}

// step is one clock step of a rule scenario: advance the clock, change
// the statistics, evaluate, and expect one notification or none.
type step struct {
	advance time.Duration
	set     func(b *testBundle)
	// want is "", "firing", "reminder" or "resolved".
	want    string
	subject string
	summary string
}

func TestRules(t *testing.T) {
	t.Parallel()

	queue := func(flow string, waiting int) func(*testBundle) {
		return func(b *testBundle) {
			b.stats.setQueue(store.FlowStats{Flow: flow, Waiting: waiting, OldestWaiting: b.clock.Now()})
		}
	}
	lags := func(flow string, n int, d time.Duration) func(*testBundle) {
		return func(b *testBundle) {
			for range n {
				b.m.ObserveLag(flow, d)
			}
		}
	}
	attempts := func(succeeded, failed int) func(*testBundle) {
		return func(b *testBundle) { b.stats.setAttempts("crm", succeeded, failed) }
	}
	lastEvent := func(ago time.Duration) func(*testBundle) {
		return func(b *testBundle) { b.stats.setLast("web_form", b.clock.Now().Add(-ago)) }
	}
	pollState := func(p store.PollState, movedAgo time.Duration) func(*testBundle) {
		return func(b *testBundle) {
			p.CursorMovedAt = b.clock.Now().Add(movedAgo)
			b.stats.setPoll(p)
		}
	}
	failing := func(source string, n int) func(*testBundle) {
		return func(b *testBundle) {
			p := store.PollState{Source: source, Failures: n}
			if n > 0 {
				p.LastError = "page 2: GET /jobs: 500 Internal Server Error"
			}
			b.stats.setPoll(p)
		}
	}
	found := func(n int) func(*testBundle) {
		return func(b *testBundle) { b.stats.setPoll(store.PollState{Source: "job_poll", LastFound: n}) }
	}
	rising := rule.Rule{Kind: rule.RisingBacklog, Flow: "f", Window: 15 * time.Minute, Growth: 100}
	depths := func(ds ...int) []step {
		var out []step
		for i, d := range ds {
			out = append(out, step{advance: time.Duration(min(i, 1)) * 5 * time.Minute, set: queue("f", d)})
		}
		return out
	}

	tests := []struct {
		name  string
		rule  rule.Rule
		steps []step
	}{
		{
			name: "oldest_pending fires above its age and resolves when the queue empties",
			rule: rule.Rule{Kind: rule.OldestPending, Flow: "f", Age: 10 * time.Minute},
			steps: []step{
				{set: queue("f", 5)},
				{advance: 10 * time.Minute},
				{advance: time.Minute, want: "firing", summary: "oldest pending run of flow f has waited 11m (above 10m); 5 runs waiting"},
				{advance: time.Minute},
				{set: queue("f", -1), want: "resolved", summary: "no runs waiting in flow f"},
			},
		},
		{
			name: "lag_p95 fires when the slowest 5% are slow and resolves when the window forgets them",
			rule: rule.Rule{Kind: rule.LagP95, Flow: "f", Age: 2 * time.Minute, Window: 10 * time.Minute},
			steps: []step{
				{set: lags("f", 20, 30*time.Second)},
				{set: lags("f", 1, 5*time.Minute)}, // 1 of 21: the p95 is still 30s
				{set: lags("f", 1, 5*time.Minute), want: "firing",
					summary: "p95 lag (event received to run finished) of flow f is 5m over the last 10m (above 2m; 22 runs)"},
				{advance: 11 * time.Minute, set: lags("f", 10, 10*time.Second), want: "resolved",
					summary: "p95 lag of flow f is 10s over the last 10m (limit 2m)"},
			},
		},
		{
			name: "error_rate waits for min_attempts",
			rule: rule.Rule{Kind: rule.ErrorRate, System: "crm", Rate: 0.2, Window: 10 * time.Minute, MinAttempts: 20},
			steps: []step{
				{set: attempts(1, 9)},
				{advance: time.Minute, set: attempts(20, 10), want: "firing",
					subject: "crm", summary: "error rate of system crm is 33.3% over the last 10m: 10 of 30 attempts failed (above 20%)"},
				{advance: time.Minute, set: attempts(2, 8)}, // too few to judge: neither fires again nor resolves
				{advance: time.Hour, set: attempts(0, 0), want: "reminder",
					subject: "crm", summary: "0 attempts against system crm in the last 10m, too few to judge (min_attempts 20)"},
				{advance: time.Minute, set: attempts(27, 3), want: "resolved",
					subject: "crm", summary: "error rate of system crm is 10% over the last 10m: 3 of 30 attempts failed (limit 20%)"},
			},
		},
		{
			name:  "rising_backlog fires on steady growth",
			rule:  rising,
			steps: append(depths(100, 150, 200), step{advance: 5 * time.Minute, set: queue("f", 260), want: "firing", summary: "queue of flow f grew from 100 to 260 (+160) over the last 15m without draining (min_growth 100)"}),
		},
		{
			name:  "rising_backlog stays quiet on a flat queue",
			rule:  rising,
			steps: depths(500, 500, 500, 500, 500, 500),
		},
		{
			name:  "rising_backlog stays quiet on a shrinking queue",
			rule:  rising,
			steps: depths(400, 350, 300, 250, 200),
		},
		{
			name:  "rising_backlog stays quiet when the queue drained in between",
			rule:  rising,
			steps: depths(100, 300, 150, 260),
		},
		{
			name: "rising_backlog resolves when the queue drains",
			rule: rising,
			steps: append(depths(100, 150, 200),
				step{advance: 5 * time.Minute, set: queue("f", 260), want: "firing", summary: "queue of flow f grew from 100 to 260 (+160) over the last 15m without draining (min_growth 100)"},
				step{advance: 5 * time.Minute, set: queue("f", 200), want: "resolved", summary: "queue of flow f is draining: 200 now, 260 at most in the last 15m"},
			),
		},
		{
			name: "silent_source fires after for without events and resolves on the next event",
			rule: rule.Rule{Kind: rule.SilentSource, Source: "web_form", Age: 2 * time.Hour},
			steps: []step{
				{set: lastEvent(time.Hour)},
				{advance: 59 * time.Minute},
				{advance: time.Minute, want: "firing", subject: "web_form",
					summary: "no event from source web_form for 2h (last at 2025-03-04 08:00:00 UTC; expected within 2h)"},
				{advance: 30 * time.Minute},
				{advance: 30 * time.Minute, want: "reminder", subject: "web_form",
					summary: "no event from source web_form for 3h (last at 2025-03-04 08:00:00 UTC; expected within 2h)"},
				{set: lastEvent(time.Minute), want: "resolved", subject: "web_form",
					summary: "source web_form received an event 1m ago (at 2025-03-04 10:59:00 UTC)"},
			},
		},
		{
			name: "silent_source counts from the start when the store holds no event",
			rule: rule.Rule{Kind: rule.SilentSource, Source: "web_form", Age: 2 * time.Hour},
			steps: []step{
				{advance: 119 * time.Minute},
				{advance: time.Minute, want: "firing", subject: "web_form",
					summary: "no event from source web_form since alerting started 2h ago (none stored; expected within 2h)"},
			},
		},
		{
			name: "poll_cursor fires when the cursor stands still and resolves when it moves",
			rule: rule.Rule{Kind: rule.PollCursor, Source: "jobs", Age: time.Hour},
			steps: []step{
				{set: pollState(store.PollState{Source: "jobs", Cursor: "2025-03-04T08:30:00Z", HasCursor: true}, -30*time.Minute)},
				{advance: 29 * time.Minute},
				{advance: time.Minute, set: func(b *testBundle) {
					b.stats.setPoll(store.PollState{Source: "jobs", Cursor: "2025-03-04T08:30:00Z", HasCursor: true,
						CursorMovedAt: t0.Add(-30 * time.Minute), LastError: "page 1: GET /jobs: 503 Service Unavailable"})
				}, want: "firing", subject: "jobs",
					summary: `the cursor of poll source jobs has not advanced for 1h (still "2025-03-04T08:30:00Z" since 2025-03-04 08:30:00 UTC; expected within 1h); last error: page 1: GET /jobs: 503 Service Unavailable`},
				{advance: time.Minute, set: pollState(store.PollState{Source: "jobs", Cursor: "2025-03-04T09:31:00Z", HasCursor: true}, 0),
					want: "resolved", subject: "jobs", summary: `the cursor of poll source jobs advanced 0s ago (now "2025-03-04T09:31:00Z")`},
			},
		},
		{
			name: "poll_failing fires after failures in a row, per source, and resolves on success",
			rule: rule.Rule{Kind: rule.PollFailing, Count: 3},
			steps: []step{
				{set: failing("jobs", 2)},
				{set: func(b *testBundle) { failing("jobs", 3)(b); failing("backfill:jobs", 9)(b) }, want: "firing", subject: "jobs",
					summary: "timed source jobs failed 3 runs in a row (last success: never): page 2: GET /jobs: 500 Internal Server Error"},
				{set: failing("jobs", 0), want: "resolved", subject: "jobs", summary: "timed source jobs runs again (last success: never)"},
			},
		},
		{
			name: "backstop_found fires while the last run found lost webhooks",
			rule: rule.Rule{Kind: rule.BackstopFound, Source: "job_poll"},
			steps: []step{
				{set: found(0)},
				{set: found(3), want: "firing", subject: "job_poll",
					summary: "backstop poll job_poll found 3 records its webhooks never delivered in its last run (lost webhooks; the poll stored them)"},
				{set: found(0), want: "resolved", subject: "job_poll", summary: "backstop poll job_poll found no record the webhooks missed in its last run"},
			},
		},
		{
			name: "queue_depth without flow alerts each flow on its own",
			rule: rule.Rule{Kind: rule.QueueDepth, Depth: 1000},
			steps: []step{
				{set: func(b *testBundle) { queue("a", 1500)(b); queue("b", 10)(b) }, want: "firing", subject: "a",
					summary: "queue depth of flow a is 1,500 (above 1,000)"},
				{set: queue("a", -1), want: "resolved", subject: "a", summary: "queue depth of flow a is 0 (limit 1,000)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, bundleOpts{rules: []rule.Rule{tt.rule}})
			for i, s := range tt.steps {
				b.clock.Advance(s.advance)
				if s.set != nil {
					s.set(b)
				}
				b.evaluate(t)
				if s.want == "" {
					require.Empty(t, b.hook.take(), "step %d: want no notification", i)
					require.Empty(t, b.slack.take(), "step %d: want no notification", i)
					continue
				}
				msg := b.one(t)
				status, reminder := s.want, false
				if s.want == "reminder" {
					status, reminder = "firing", true
				}
				require.Equal(t, status, msg["status"], "step %d", i)
				require.Equal(t, reminder, msg["reminder"] == true, "step %d", i)
				require.Equal(t, string(tt.rule.Kind), msg["rule"], "step %d", i)
				require.Equal(t, s.summary, msg["summary"], "step %d", i)
				if s.subject == "" {
					s.subject = "f"
				}
				require.Equal(t, s.subject, msg["subject"], "step %d", i)
			}
		})
	}
}

func TestErrorRateReadsItsWindow(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{
		{Kind: rule.ErrorRate, Rate: 0.5, Window: 10 * time.Minute, MinAttempts: 1},
		{Kind: rule.ErrorRate, System: "crm", Rate: 0.9, Window: 10 * time.Minute, MinAttempts: 1},
	}})
	b.evaluate(t)
	require.Equal(t, []time.Time{t0.Add(-10 * time.Minute)}, b.stats.since, "one query per window, shared by the rules")
}

func TestEvaluateKeepsAlertsWhenStatsFail(t *testing.T) {
	t.Parallel()

	b := setup(t, bundleOpts{rules: []rule.Rule{{Kind: rule.QueueDepth, Flow: "f", Depth: 10}}})
	b.stats.setQueue(store.FlowStats{Flow: "f", Waiting: 50})
	b.evaluate(t)
	require.Equal(t, "firing", b.one(t)["status"])

	b.stats.mu.Lock()
	b.stats.err = errors.New("database is locked")
	b.stats.mu.Unlock()
	b.clock.Advance(time.Minute)
	require.ErrorContains(t, b.m.Evaluate(t.Context()), "database is locked")
	b.flush(t)
	b.none(t) // a failed read is not a resolution
}
