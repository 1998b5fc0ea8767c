package cli_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// syncYAML joins a CRM and a scheduler both ways: a cycle check warns about.
const syncYAML = `version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
  sched: { kind: http, base_url: "http://127.0.0.1:9002" }
entities:
  customer: { owner: crm, mirrors: [sched] }
sources:
  crm_changed: { webhook: {}, system: crm, entity: customer, record_id: .id }
  sched_changed: { webhook: {}, system: sched, entity: customer, record_id: .id }
flows:
  crm_to_sched:
    on: crm_changed
    steps:
      - { id: put, do: sched.request, writes: customer, record_id: .id, with: { path: '"/c"', body: '{name: .name}' } }
  sched_to_crm:
    on: sched_changed
    steps:
      - { id: put, do: crm.request, writes: customer, record_id: .id, with: { path: '"/c"', body: '{name: .name}' } }
`

func TestCheckOwnership(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "sync.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(syncYAML), 0o600))

	code, out, errOut := run(t, nil, "check", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "entities (1; echoes within 10m0s suppressed, at most 5 hops):\n  customer         owner crm, mirrors sched; conflicts are dropped\n")
	require.Contains(t, out, "  crm → sched  crm_to_sched.put (customer)\n  sched → crm  sched_to_crm.put (customer)\n  CYCLE crm → sched → crm\n")
	require.Contains(t, out, "cycle crm → sched → crm: crm's events lead to writes in sched (crm_to_sched.put (customer)), sched's events lead to writes in crm (sched_to_crm.put (customer))")
	require.Contains(t, out, "flows.sched_to_crm: step put would write customer to crm, its owner, from a change made in sched, a mirror; such changes are not written back: they are dropped")

	code, out, errOut = run(t, nil, "check", "--config", cfg, "--format", "dot")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "digraph switchboard {")
	require.Contains(t, out, `"crm" -> "sched" [label="crm_to_sched.put (customer)" color=red];`)
	require.NotContains(t, out, "entities")

	code, out, errOut = run(t, nil, "check", "--config", cfg, "--format", "mermaid")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "flowchart LR\n")
	require.Contains(t, out, `n0 -->|"crm_to_sched.put (customer)"| n1`)

	code, _, errOut = run(t, nil, "check", "--config", cfg, "--format", "svg")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown --format "svg"`)
}

func TestCheckOwnershipErrors(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	bad := `version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
  sched: { kind: http, base_url: "http://127.0.0.1:9002" }
  erp: { kind: http, base_url: "http://127.0.0.1:9003" }
entities:
  customer: { owner: [crm, erp], mirrors: [sched] }
  job: { owner: sched, fields: { price: erp } }
sources:
  form: { webhook: {} }
flows:
  f:
    on: form
    steps:
      - { id: a, do: erp.request, writes: job, with: { path: '"/j"' } }
      - { id: b, do: crm.request, writes: job, fields: { price: .price }, with: { path: '"/j"' } }
`
	require.NoError(t, os.WriteFile(cfg, []byte(bad), 0o600))
	code, _, errOut := run(t, nil, "check", "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, cfg+":7:22: entities.customer.owner: entity customer has 2 owners (crm, erp)")
	require.Contains(t, errOut, cfg+":16:22: flows.f.steps[1].do: writes job to crm, which is neither its owner (sched) nor a mirror (it has none)")
}

// TestEventsShowLineageAndReplayConflicts inspects stored events: an echo
// shows its outcome and chain; replay refuses an echo and skips a flow
// the engine refused as a conflict, unless the operator names a flow.
func TestEventsShowLineageAndReplayConflicts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sync.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(syncYAML), 0o600))
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "sb.db"))
	require.NoError(t, err)
	now := time.Now()
	echo := store.NewEvent{ID: store.NewID("evt_", now), Source: "crm_changed", Key: "e1", ReceivedAt: now, Payload: []byte(`{"id":"c1"}`),
		Lineage: store.Lineage{Outcome: store.EventEcho, Hop: 1, Chain: "sched_changed → crm customer c1 → crm_changed", ParentRun: "run_1"}}
	mirror := store.NewEvent{ID: store.NewID("evt_", now), Source: "sched_changed", Key: "e2", ReceivedAt: now, Payload: []byte(`{"id":"c1"}`),
		Lineage: store.Lineage{Outcome: store.EventConflict}}
	res, err := st.InsertEvents(t.Context(), []store.NewEvent{echo, mirror})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	code, out, errOut := run(t, nil, "events", "show", res[0].EventID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "outcome  echo (no runs for it)\nhop      1, caused by run run_1\nchain    sched_changed → crm customer c1 → crm_changed\n")

	code, _, errOut = run(t, nil, "replay", res[0].EventID, "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "is the echo of our own write (run run_1): no flow ran for it; name one with --flow to replay it anyway")

	code, _, errOut = run(t, nil, "replay", res[1].EventID, "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not replaying flow sched_to_crm: step put would write customer to crm, its owner, from a change made in sched, a mirror")
	code, out, errOut = run(t, nil, "replay", res[1].EventID, "--config", cfg, "--flow", "sched_to_crm")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sched_to_crm")
}
