package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// TestConditionCutOff: a flow's when: cut off while it was evaluated (the
// request cancelled, its sender gone; jq's time limit on a starved CPU)
// must not store the event with a run of that flow. The run was kept so the
// executor would dead-letter a condition that fails to evaluate, but the
// executor, whose evaluation succeeds, then ran the flow whatever the
// condition said: here a deletion for a record just created.
func TestConditionCutOff(t *testing.T) {
	t.Parallel()
	plan, st := planAndStore(t, `
version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9" }
sources:
  hooks: { webhook: {} }
flows:
  remove:
    on: hooks
    when: .type == "deleted"
    steps: [{ id: a, do: crm.request, with: { method: '"DELETE"', path: '"/x"' } }]
  slow:
    on: hooks
    when: '.type == "slow" and (reduce range(1e10) as $i (0; . + 1)) > 0'
    steps: [{ id: a, do: crm.request, with: { path: '"/y"' } }]
`)
	eng := engine.New(engine.Config{Store: st, Plan: plan})

	payload := []byte(`{"type":"created"}`)
	v, err := transform.Decode(payload)
	require.NoError(t, err)
	ev := engine.Event{Source: "hooks", Key: "k1", Payload: payload, Value: v}

	b, err := eng.Build(t.Context(), ev)
	require.NoError(t, err)
	require.Empty(t, b.Event.Runs, "the conditions are false")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b, err = eng.Build(ctx, ev)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, b.Event.Runs)

	slow := []byte(`{"type":"slow"}`)
	v, err = transform.Decode(slow)
	require.NoError(t, err)
	b, err = eng.Build(t.Context(), engine.Event{Source: "hooks", Key: "k2", Payload: slow, Value: v})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "took longer than")
	require.Empty(t, b.Event.Runs)
}

// planAndStore compiles yaml with every built-in kind and opens a SQLite
// store for it in the test's directory.
func planAndStore(t *testing.T, yaml string) (*flow.Plan, *sqlite.Store) {
	t.Helper()
	c, err := config.Parse("c.yaml", []byte(yaml), nil)
	require.NoError(t, err)
	plan, err := flow.Compile(c, all.Registry())
	require.NoError(t, err)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "sb.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return plan, st
}
