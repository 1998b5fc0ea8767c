package flow_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

// TestOwnershipErrorsGolden compiles a config that breaks every ownership
// rule `check` enforces and compares the errors, each with its
// file:line:col, with testdata/ownership.golden.
func TestOwnershipErrorsGolden(t *testing.T) {
	t.Parallel()
	const file = "testdata/ownership.yaml"
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	_, err = compile(t, file, string(data))
	require.Error(t, err)
	var lines []string
	for _, e := range unjoin(err) {
		var ce *config.Error
		require.ErrorAs(t, e, &ce)
		require.Positive(t, ce.Line, "%s: every error names its line", e)
		lines = append(lines, e.Error())
	}
	got := strings.Join(lines, "\n") + "\n"
	golden := strings.TrimSuffix(file, ".yaml") + ".golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/flow -update to create it")
	require.Equal(t, string(want), got)
}

// syncConfig joins a CRM (owner of customer) and a scheduler (mirror) both
// ways, with the phone owned by the phone system.
const syncConfig = `
version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
  sched: { kind: http, base_url: "http://127.0.0.1:9002" }
  phones: { kind: http, base_url: "http://127.0.0.1:9003" }
entities:
  customer:
    owner: crm
    mirrors: [sched]
    fields: { phone: phones, notes: sched }
    on_conflict: propose
loops: { echo_window: 2m, max_hops: 3 }
sources:
  crm_changed: { webhook: {}, system: crm, entity: customer, record_id: .id, record: .customer }
  sched_changed: { webhook: {}, system: sched, entity: customer, record_id: .id }
  phones_changed: { webhook: {}, system: phones, entity: customer, record_id: .id }
flows:
  crm_to_sched:
    on: crm_changed
    steps:
      - id: put
        do: sched.request
        writes: customer
        record_id: .id
        fields: { name: .customer.name }
        with: { method: '"PUT"', path: '"/c/\(.id)"', body: '{name: .customer.name}' }
  sched_to_crm:
    on: sched_changed
    steps:
      - id: put
        do: crm.request
        writes: customer
        with: { method: '"PUT"', path: '"/c/\(.id)"', body: '{name: .name}' }
  sched_notes_to_crm:
    on: sched_changed
    steps:
      - id: put
        do: crm.request
        writes: customer
        record_id: .id
        fields: { notes: .notes }
        with: { method: '"PATCH"', path: '"/c/\(.id)"', body: '{notes: .notes}' }
  phone_to_crm:
    on: phones_changed
    steps:
      - id: put
        do: crm.request
        writes: customer
        record_id: .id
        fields: { phone: .phone }
        with: { method: '"PATCH"', path: '"/c/\(.id)"', body: '{phone: .phone}' }
  propose:
    steps:
      - { id: task, do: crm.request, with: { path: '"/tasks"', body: '{about: .id}' } }
`

func TestOwnershipCompiles(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "sync.yaml", syncConfig)
	o := p.Ownership
	require.Equal(t, 3, o.MaxHops)
	require.True(t, o.SuppressEchoes)
	cust := o.Entities["customer"]
	require.Equal(t, "crm", cust.Owner)
	require.Equal(t, []string{"sched"}, cust.Mirrors)
	require.Equal(t, "phones", cust.OwnerOf("phone"))
	require.Equal(t, "crm", cust.OwnerOf("email"))
	require.Equal(t, "propose", cust.OnConflict)

	require.Equal(t, "sched", p.Sources["sched_changed"].Origin.System)
	put := p.Flows["crm_to_sched"].Steps[0].Write
	require.Equal(t, "customer", put.Entity)
	require.Equal(t, []string{"name"}, put.FieldNames)
	require.True(t, put.Echoable, "sched sends events about customer")

	// The scheduler's change of the whole customer goes back to its owner:
	// a conflict. Its notes (which it owns) and the phone system's phone
	// (which it owns) are not.
	c := p.Flows["sched_to_crm"].Conflict
	require.NotNil(t, c)
	require.Equal(t, flow.Conflict{Entity: "customer", Step: "put", Owner: "crm", From: "sched"}, *c)
	require.Contains(t, c.Reason(), "would write customer to crm, its owner, from a change made in sched, a mirror")
	require.Nil(t, p.Flows["sched_notes_to_crm"].Conflict)
	require.Nil(t, p.Flows["phone_to_crm"].Conflict)
	require.Empty(t, p.Flows["propose"].Source, "a conflict flow needs no on:")

	warnings := strings.Join(p.Warnings, "\n")
	require.Contains(t, warnings, "sync.yaml:30:5: flows.sched_to_crm: step put would write customer to crm")
	require.Contains(t, warnings, "they are handed to flow propose")
	require.Contains(t, warnings, "flows.sched_to_crm.steps[0]: writes customer to crm, whose events about customer come back, but has no record_id")
}

func TestOwnershipDefaults(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "c.yaml", "version: 1\nsystems:\n  crm: {kind: http, base_url: 'http://127.0.0.1:9'}\nsources:\n  s: {webhook: {}}\n"+
		"flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request, writes: job}]\n")
	require.Equal(t, flow.DefaultMaxHops, p.Ownership.MaxHops)
	require.Equal(t, flow.DefaultEchoWindow, p.Ownership.EchoWindow)
	job := p.Ownership.Entities["job"]
	require.NotNil(t, job, "an entity written to one system only is owned by it")
	require.Equal(t, "crm", job.Owner)
	require.False(t, job.Declared)
	require.False(t, p.Flows["f"].Steps[0].Write.Echoable)
}

func TestOwnershipEchoNeedsRecordID(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "c.yaml", "version: 1\nsystems:\n  crm: {kind: http, base_url: 'http://127.0.0.1:9'}\n"+
		"entities:\n  job: {owner: crm}\nsources:\n  s: {webhook: {}, system: crm, entity: job}\n"+
		"flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request, writes: job}]\n")
	require.False(t, p.Flows["f"].Steps[0].Write.Echoable, "nothing could match the fingerprint: none is written")
	require.Contains(t, strings.Join(p.Warnings, "\n"), "c.yaml:7:6: sources.s: without record_id the echoes of our writes to crm cannot be recognised")
}

// TestGraphLeavesOutReads: a lookup in the system whose event started the
// flow is data flowing from it, not to it: no edge, no cycle. A request
// that may write (any other method, or one computed by jq) keeps its edge.
func TestGraphLeavesOutReads(t *testing.T) {
	t.Parallel()
	const base = `
version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
  sched: { kind: http, base_url: "http://127.0.0.1:9002" }
entities:
  customer: { owner: crm, mirrors: [sched] }
sources:
  crm_changed: { webhook: {}, system: crm, entity: customer, record_id: .id }
flows:
  crm_to_sched:
    on: crm_changed
    steps:
      - id: lookup
        do: crm.request
        with: %s
      - id: put
        do: sched.request
        writes: customer
        record_id: .id
        with: { method: '"PUT"', path: '"/c/\(.id)"', body: '{name: $steps.lookup.name}' }
`
	for _, tc := range []struct {
		name, with string
		cycle      bool
	}{
		{"GET", `{ method: '"GET"', path: '"/c/\(.id)"' }`, false},
		{"head, lower case", `{ method: '"head"', path: '"/c/\(.id)"' }`, false},
		{"default method without a body", `{ path: '"/c/\(.id)"' }`, false},
		{"default method with a body", `{ path: '"/c/\(.id)"', body: '{x: 1}' }`, true},
		{"POST", `{ method: '"POST"', path: '"/c/\(.id)/touch"' }`, true},
		{"computed method", `{ method: 'if .x then "GET" else "DELETE" end', path: '"/c"' }`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := mustCompile(t, "c.yaml", fmt.Sprintf(base, tc.with))
			g := p.SystemGraph()
			var edges []string
			for _, e := range g.Edges {
				edges = append(edges, e.From+" → "+e.To+" "+e.Label())
			}
			if tc.cycle {
				require.Equal(t, [][]string{{"crm"}}, g.Cycles())
				require.Contains(t, edges, "crm → crm crm_to_sched.lookup")
				require.Contains(t, strings.Join(p.Warnings, "\n"), "cycle crm → crm")
			} else {
				require.Empty(t, g.Cycles())
				require.Equal(t, []string{"crm → sched crm_to_sched.put (customer)"}, edges)
				require.NotContains(t, strings.Join(p.Warnings, "\n"), "cycle")
			}
		})
	}
}

// TestCycleWarningSaysWhenNothingStopsIt compiles a two-way sync whose
// steps declare no entity: nothing fingerprints their writes, so the
// warning must not promise that echo suppression and max_hops stop the
// cycle; it names the steps that leave it open. Declaring what one
// direction writes still leaves the other open.
func TestCycleWarningSaysWhenNothingStopsIt(t *testing.T) {
	t.Parallel()
	const base = `version: 1
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
      - { id: put, do: sched.request, %s with: { method: '"PUT"', path: '"/c"', body: '{name: .name}' } }
  sched_to_crm:
    on: sched_changed
    steps:
      - { id: put, do: crm.request, with: { method: '"PUT"', path: '"/c"', body: '{phone: .phone}' } }
`
	for _, tc := range []struct{ name, writes, open string }{
		{"neither direction declares its entity", "", "crm_to_sched.put, sched_to_crm.put"},
		{"one direction declares it", "writes: customer, record_id: .id,", "sched_to_crm.put"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := mustCompile(t, "c.yaml", fmt.Sprintf(base, tc.writes))
			var cycle string
			for _, w := range p.Warnings {
				if strings.HasPrefix(w, "cycle ") {
					cycle = w
				}
			}
			require.Contains(t, cycle, "cycle crm → sched → crm")
			require.Contains(t, cycle, "NOT STOPPED: the writes of "+tc.open+" are not fingerprinted")
			require.NotContains(t, cycle, "is dead-lettered")
		})
	}
}
