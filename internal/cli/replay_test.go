package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// whenYAML has two flows on one source, each for one kind of event.
const whenYAML = `version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
sources:
  changed: { webhook: {} }
flows:
  on_created:
    on: changed
    when: .type == "created"
    steps:
      - { id: create, do: crm.request, with: { method: '"POST"', path: '"/c"' } }
  on_deleted:
    on: changed
    when: .type == "deleted"
    steps:
      - { id: remove, do: crm.request, with: { method: '"DELETE"', path: '"/c/" + .id' } }
`

// TestReplayKeepsFlowConditions replays an event: only the flows whose
// when: holds for it run again, as the engine ran them; a replay must not
// run a flow meant for other events (a delete, for a create).
func TestReplayKeepsFlowConditions(t *testing.T) {
	t.Parallel()
	dir, cfg, eventID := storedEvent(t, whenYAML, `{"type":"created","id":"c1"}`, "on_created", "create")

	code, out, errOut := run(t, nil, "replay", eventID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "flow on_created, generation 1")
	require.NotContains(t, out, "on_deleted")
	require.Contains(t, errOut, "not replaying flow on_deleted: its when: is false for this event")

	// Named, it runs: the operator asked for it.
	code, out, errOut = run(t, nil, "replay", eventID, "--config", cfg, "--flow", "on_deleted")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "flow on_deleted, generation 0")

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "sb.db"))
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{EventID: eventID})
	require.NoError(t, err)
	require.Len(t, runs, 3, "the original, its replay and the named replay")
}

// TestReplayNoFlowHolds replays an event no flow's condition holds for:
// nothing is queued, and the error says why and how to force it.
func TestReplayNoFlowHolds(t *testing.T) {
	t.Parallel()
	_, cfg, eventID := storedEvent(t, whenYAML, `{"type":"updated"}`, "", "")

	code, out, errOut := run(t, nil, "replay", eventID, "--config", cfg)
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, `none of source "changed"'s flows would run for this event (name one with --flow to replay it anyway)`)
}

// TestReplayConditionCutOff: a when: whose evaluation is cut off (jq's
// time limit) says nothing about the event. Kept, the run would go ahead at
// delivery whatever the condition says (the executor does not look at its
// value): the replay stops and says so instead, queuing nothing.
func TestReplayConditionCutOff(t *testing.T) {
	t.Parallel()
	yaml := strings.Replace(whenYAML, `when: .type == "deleted"`,
		`when: '.type == "deleted" or (reduce range(1e10) as $i (0; . + 1)) < 0'`, 1)
	dir, cfg, eventID := storedEvent(t, yaml, `{"type":"created","id":"c1"}`, "on_created", "create")

	code, out, errOut := run(t, nil, "replay", eventID, "--config", cfg)
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "on_deleted")
	require.Contains(t, errOut, "took longer than")

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "sb.db"))
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{EventID: eventID})
	require.NoError(t, err)
	require.Len(t, runs, 1, "nothing replayed")
}

// storedEvent writes yaml as a config and stores an event of source
// "changed" with payload, started with one run of flow at step (none when
// flow is ""), in a SQLite store beside it. It returns the directory, the
// config's path and the event's id.
func storedEvent(t *testing.T, yaml, payload, flow, step string) (dir, cfg, eventID string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "switchboard.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o600))
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "sb.db"))
	require.NoError(t, err)
	now := time.Now()
	ev := store.NewEvent{ID: store.NewID("evt_", now), Source: "changed", Key: "k1", ReceivedAt: now, Payload: []byte(payload)}
	if flow != "" {
		ev.Runs = []store.NewRun{{ID: store.NewID("run_", now), Flow: flow, StepID: step}}
	}
	res, err := st.InsertEvents(t.Context(), []store.NewEvent{ev})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	return dir, cfg, res[0].EventID
}
