package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// TestLineageCutOff: the record_id: or record: of an echo's source, cut off
// while evaluated (the request cancelled; jq's time limit on a starved
// CPU), must not let the event through as a person's change. Taken for
// "not about a record", our own write's echo ran its flows (writing it
// back) in a new causal chain at hop 0, out of max_hops' sight. As with a
// cut-off when:, nothing is stored and the sender sends again.
func TestLineageCutOff(t *testing.T) {
	t.Parallel()
	plan, st := planAndStore(t, `
version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9" }
  sched: { kind: http, base_url: "http://127.0.0.1:9" }
entities:
  job: { owner: sched, mirrors: [crm] }
sources:
  crm_changed:
    webhook: {}
    system: crm
    entity: job
    record_id: 'if .slow_id then (reduce range(1e10) as $i (0; . + 1)) else .id end'
    record: 'if .slow_record then (reduce range(1e10) as $i (0; . + 1)) else .job end'
flows:
  notify:
    on: crm_changed
    steps: [{ id: a, do: sched.request, with: { path: '"/x"' } }]
`)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	eng := engine.New(engine.Config{Store: st, Plan: plan, Fingerprints: st, NowFunc: func() time.Time { return now }})
	fp := echo.Of(map[string]any{"status": "done"})
	require.NoError(t, st.SaveFingerprint(t.Context(), store.Fingerprint{
		ID: "w1", System: "crm", Entity: "job", RecordID: "7", Fields: fp.Fields, Hash: fp.Hash,
		RunID: "run_w1", Hop: 1, Chain: "sched_changed → crm job 7", CreatedAt: now,
	}))
	build := func(ctx context.Context, payload string) (engine.Built, error) {
		v, err := transform.Decode([]byte(payload))
		require.NoError(t, err)
		return eng.Build(ctx, engine.Event{Source: "crm_changed", Key: "k", Payload: []byte(payload), Value: v})
	}

	b, err := build(t.Context(), `{"id": 7, "job": {"status": "done"}}`)
	require.NoError(t, err)
	require.Equal(t, store.EventEcho, b.Event.Lineage.Outcome, "our write's echo")
	require.Empty(t, b.Event.Runs)

	for _, slow := range []string{"slow_id", "slow_record"} {
		b, err = build(t.Context(), `{"id": 7, "job": {"status": "done"}, "`+slow+`": true}`)
		require.ErrorIs(t, err, context.DeadlineExceeded, slow)
		require.Empty(t, b.Event.Runs, slow)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b, err = build(ctx, `{"id": 7, "job": {"status": "done"}, "slow_id": true}`)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, b.Event.Runs)

	b, err = build(t.Context(), `{"ping": true}`)
	require.NoError(t, err, "an event about no record is still not an echo")
	require.Len(t, b.Event.Runs, 1)
}
