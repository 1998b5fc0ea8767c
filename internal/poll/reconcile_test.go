package poll_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

type rec = map[string]any

// plantedSystems returns an owner and a mirror of 13 and 12 customers
// with these planted differences, and nothing else:
//
//   - missing in the mirror: carl, dora;
//   - missing in the owner: zed;
//   - field mismatches: ann (phone), bob (phone and name), hal (phone
//     "5550108" in the owner, the number 5550180 in the mirror);
//   - a duplicate key in the mirror: gus (two customers);
//
// and these non-differences: eve's e-mail differs in case (the key
// lower-cases it), finn's name has a trailing space, ida's phone is the
// string "5550109" in the owner and the number 5550109 in the mirror, jo
// differs in city/town (not compared), and one contact has no e-mail
// (counted as unkeyed).
func plantedSystems(t testing.TB) (*fakeCRM, *fakeAccounting) {
	crm := newFakeCRM(t, 3,
		rec{"id": "101", "email": "ann@example.com", "firstname": "Ann", "phone": "5550101", "city": "Lyon"},
		rec{"id": "102", "email": "bob@example.com", "firstname": "Bob", "phone": "5550102", "city": "Nice"},
		rec{"id": "103", "email": "carl@example.com", "firstname": "Carl", "phone": "5550103", "city": "Metz"},
		rec{"id": "104", "email": "dora@example.com", "firstname": "Dora", "phone": "5550104", "city": "Pau"},
		rec{"id": "105", "email": "Eve@Example.com", "firstname": "Eve", "phone": "5550105", "city": "Caen"},
		rec{"id": "106", "email": "finn@example.com", "firstname": "Finn ", "phone": "5550106", "city": "Dax"},
		rec{"id": "107", "email": "gus@example.com", "firstname": "Gus", "phone": "5550107", "city": "Albi"},
		rec{"id": "108", "email": "hal@example.com", "firstname": "Hal", "phone": "5550108", "city": "Agen"},
		rec{"id": "109", "email": "ida@example.com", "firstname": "Ida", "phone": "5550109", "city": "Sète"},
		rec{"id": "110", "email": "jo@example.com", "firstname": "Jo", "phone": "5550110", "city": "Brest"},
		rec{"id": "111", "email": nil, "firstname": "Nobody", "phone": "5550111"},
		rec{"id": "112", "email": "kim@example.com", "firstname": "Kim", "phone": nil},
		rec{"id": "113", "email": "lou@example.com", "firstname": "Lou", "phone": ""},
	)
	acct := newFakeAccounting(t, 4,
		rec{"id": 1, "email": "ann@example.com", "first_name": "Ann", "phone": "5550199", "town": "Lyon"},
		rec{"id": 2, "email": "bob@example.com", "first_name": "Robert", "phone": "5550100", "town": "Nice"},
		rec{"id": 5, "email": "eve@example.com", "first_name": "Eve", "phone": "5550105", "town": "Caen"},
		rec{"id": 6, "email": "finn@example.com", "first_name": "Finn", "phone": "5550106", "town": "Dax"},
		rec{"id": 7, "email": "gus@example.com", "first_name": "Gus", "phone": "5550107", "town": "Albi"},
		rec{"id": 17, "email": "GUS@example.com", "first_name": "Gustave", "phone": "5550107", "town": "Albi"},
		rec{"id": 8, "email": "hal@example.com", "first_name": "Hal", "phone": 5550180, "town": "Agen"},
		rec{"id": 9, "email": "ida@example.com", "first_name": "Ida", "phone": 5550109, "town": "Sète"},
		rec{"id": 10, "email": "jo@example.com", "first_name": "Jo", "phone": "5550110", "town": "Quimper"},
		rec{"id": 12, "email": "kim@example.com", "first_name": "Kim"},
		rec{"id": 13, "email": "lou@example.com", "first_name": "Lou", "phone": nil},
		rec{"id": 26, "email": "zed@example.com", "first_name": "Zed", "phone": "5550126", "town": "Lille"},
	)
	return crm, acct
}

// plantedDifferences are the differences plantedSystems holds, as
// "type key [fields]" in report order.
var plantedDifferences = []string{
	"field_mismatch ann@example.com [phone]",
	"field_mismatch bob@example.com [name phone]",
	"missing_in_mirror carl@example.com []",
	"missing_in_mirror dora@example.com []",
	"duplicate_key gus@example.com []",
	"field_mismatch hal@example.com [phone]",
	"missing_in_owner zed@example.com []",
}

func describe(diffs []poll.Difference) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, fmt.Sprintf("%s %s %v", d.Type, d.Key, d.Fields))
	}
	return out
}

// events returns source's stored events by key, payloads decoded.
func (h *harness) events(source string) map[string]map[string]any {
	evs, err := h.st.ListEvents(h.t.Context(), store.ListEventsParams{Source: source, Limit: 10000})
	require.NoError(h.t, err)
	out := map[string]map[string]any{}
	for _, e := range evs {
		var v map[string]any
		require.NoError(h.t, json.Unmarshal(e.Payload, &v))
		out[e.Key] = v
	}
	return out
}

// TestReconcilePlantedDifferences: a reconciliation of two fake systems
// reports exactly the planted differences, in the report and as stored
// events with a summary; a flow runs on the mismatches only; running the
// same tick again stores nothing new.
func TestReconcilePlantedDifferences(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 100, ""), "")
	src := h.plan.Sources["customer_drift"]

	dry, err := h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, plantedDifferences, describe(dry.Differences))
	require.Empty(t, h.keys("customer_drift"), "a dry run emits nothing")
	require.Equal(t, 5, crm.requests, "13 contacts in pages of 3")

	const run = "2026-11-30T03:00:00Z"
	rep, err := h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{Run: run})
	require.NoError(t, err)
	require.Equal(t, plantedDifferences, describe(rep.Differences))
	require.Equal(t, 13, rep.OwnerCount)
	require.Equal(t, 12, rep.MirrorCount)
	require.Equal(t, 1, rep.OwnerUnkeyed)
	require.Zero(t, rep.MirrorUnkeyed)
	require.Equal(t, 9, rep.Matched, "ann bob eve finn hal ida jo kim lou")
	require.Equal(t, len(plantedDifferences)+1, rep.Emitted)

	bob := rep.Differences[1]
	require.Equal(t, map[string]any{"name": "Bob", "phone": "5550102"}, bob.OwnerValues)
	require.Equal(t, map[string]any{"name": "Robert", "phone": "5550100"}, bob.MirrorValues)
	gus := rep.Differences[4]
	require.Equal(t, "mirror", gus.Side)
	require.Len(t, gus.Records, 2)

	p := "reconcile:" + run + ":"
	events := h.events("customer_drift")
	require.Equal(t, []string{
		p + "duplicate_key:mirror:gus@example.com",
		p + "field_mismatch:ann@example.com",
		p + "field_mismatch:bob@example.com",
		p + "field_mismatch:hal@example.com",
		p + "missing_in_mirror:carl@example.com",
		p + "missing_in_mirror:dora@example.com",
		p + "missing_in_owner:zed@example.com",
		p + "summary",
	}, slices.Sorted(maps.Keys(events)))

	hal := events[p+"field_mismatch:hal@example.com"]
	require.Equal(t, "field_mismatch", hal["type"])
	require.Equal(t, "hal@example.com", hal["key"])
	require.Equal(t, run, hal["run"])
	require.Equal(t, []any{"phone"}, hal["fields"])
	require.Equal(t, map[string]any{"phone": "5550108"}, hal["owner_values"])
	require.Equal(t, map[string]any{"phone": 5550180.0}, hal["mirror_values"])
	require.Equal(t, "108", hal["owner"].(map[string]any)["id"])
	require.Equal(t, 8.0, hal["mirror"].(map[string]any)["id"])

	carl := events[p+"missing_in_mirror:carl@example.com"]
	require.Equal(t, "103", carl["owner"].(map[string]any)["id"])
	require.Contains(t, carl, "mirror")
	require.Nil(t, carl["mirror"])
	require.Equal(t, map[string]any{"name": "Carl", "phone": "5550103"}, carl["owner_values"])

	zed := events[p+"missing_in_owner:zed@example.com"]
	require.Nil(t, zed["owner"])
	require.Equal(t, map[string]any{"name": "Zed", "phone": "5550126"}, zed["mirror_values"])

	dup := events[p+"duplicate_key:mirror:gus@example.com"]
	require.Equal(t, "mirror", dup["side"])
	require.Len(t, dup["records"], 2)

	summary := events[p+"summary"]
	delete(summary, "started_at")
	delete(summary, "finished_at")
	require.Equal(t, map[string]any{
		"type": "summary", "run": run, "owner_count": 13.0, "mirror_count": 12.0, "owner_unkeyed": 1.0, "mirror_unkeyed": 0.0,
		"matched": 9.0, "missing_in_mirror": 2.0, "missing_in_owner": 1.0, "field_mismatch": 3.0, "duplicate_key": 1.0,
	}, summary)

	runs, err := h.st.ListRuns(t.Context(), store.ListRunsParams{Flow: "repair", Limit: 100})
	require.NoError(t, err)
	require.Len(t, runs, 3, "the repair flow runs on the three field mismatches only")

	got, err := metricstest.Series(h.reg, "switchboard_reconcile_differences", "switchboard_events_received_total")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{
		`switchboard_events_received_total{outcome="accepted",source="customer_drift"}`:       8,
		`switchboard_reconcile_differences{source="customer_drift",type="duplicate_key"}`:     1,
		`switchboard_reconcile_differences{source="customer_drift",type="field_mismatch"}`:    3,
		`switchboard_reconcile_differences{source="customer_drift",type="missing_in_mirror"}`: 2,
		`switchboard_reconcile_differences{source="customer_drift",type="missing_in_owner"}`:  1,
	}, got)

	again, err := h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{Run: run})
	require.NoError(t, err)
	require.Zero(t, again.Emitted, "the same tick again stores nothing")
	require.Equal(t, len(plantedDifferences)+1, again.Duplicates)
	require.Len(t, h.events("customer_drift"), len(plantedDifferences)+1)

	// Repaired: the mirror now agrees on ann; the next tick reports the rest.
	acct.mu.Lock()
	acct.customers[0]["phone"] = " 5550101 "
	acct.mu.Unlock()
	next, err := h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{Run: "2026-12-07T03:00:00Z"})
	require.NoError(t, err)
	require.Equal(t, plantedDifferences[1:], describe(next.Differences))
	require.Equal(t, len(plantedDifferences), next.Emitted)
	got, err = metricstest.Series(h.reg, "switchboard_reconcile_differences")
	require.NoError(t, err)
	require.Equal(t, 2.0, got[`switchboard_reconcile_differences{source="customer_drift",type="field_mismatch"}`], "the gauge is the last run's")
}

// TestReconcilePageLimit: a side with more pages than its max_pages fails
// the reconciliation and emits nothing, rather than reporting the unread
// records missing.
func TestReconcilePageLimit(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 4, ""), "")
	for _, dry := range []bool{true, false} {
		_, err := h.poller.Reconcile(t.Context(), h.plan.Sources["customer_drift"], poll.ReconcileOptions{DryRun: dry})
		require.ErrorContains(t, err, "owner (crm): more pages than max_pages (4)")
		require.ErrorContains(t, err, "raise owner.max_pages")
	}
	require.Empty(t, h.keys("customer_drift"))
}

// TestReconcileMaxDifferences: more differences than max_differences fail
// the run before anything is emitted; a dry run still lists them.
func TestReconcileMaxDifferences(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 100, "      max_differences: 6"), "")
	src := h.plan.Sources["customer_drift"]
	rep, err := h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{})
	require.ErrorContains(t, err, "7 differences, more than max_differences (6): nothing emitted")
	require.Len(t, rep.Differences, 7)
	require.Empty(t, h.keys("customer_drift"))
	rep, err = h.poller.Reconcile(t.Context(), src, poll.ReconcileOptions{DryRun: true})
	require.NoError(t, err)
	require.Len(t, rep.Differences, 7)
}

// TestReconcileFailures: a side that fails (after retries), a key that
// jq cannot compute, or a key no record of a side has, fails the run with
// the side named; nothing is emitted.
func TestReconcileFailures(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 100, ""), "")
	acct.mu.Lock()
	acct.pageSize = 5 // the config asks per_page=4: every page is a 404
	acct.mu.Unlock()
	_, err := h.poller.Reconcile(t.Context(), h.plan.Sources["customer_drift"], poll.ReconcileOptions{})
	require.ErrorContains(t, err, "mirror (acct) page 1")
	require.ErrorContains(t, err, "404")

	crm2, acct2 := plantedSystems(t)
	crm2.contacts[4]["email"] = 42.0 // ascii_downcase of a number
	h2 := newHarness(t, reconcileConfig(crm2, acct2, 100, ""), "")
	_, err = h2.poller.Reconcile(t.Context(), h2.plan.Sources["customer_drift"], poll.ReconcileOptions{})
	require.ErrorContains(t, err, "owner record 5: key")

	crm3, acct3 := plantedSystems(t)
	for _, c := range crm3.contacts {
		c["mail"] = c["email"]
		delete(c, "email")
	}
	h3 := newHarness(t, reconcileConfig(crm3, acct3, 100, ""), "")
	_, err = h3.poller.Reconcile(t.Context(), h3.plan.Sources["customer_drift"], poll.ReconcileOptions{})
	require.ErrorContains(t, err, "owner: none of the 13 records has a key")
	require.ErrorContains(t, err, "check owner.key")

	require.Empty(t, h.keys("customer_drift"))
	require.Empty(t, h2.keys("customer_drift"))
	require.Empty(t, h3.keys("customer_drift"))
}

// TestReconcileScheduled: serving nodes run a reconcile source on its
// schedule, one node per tick; each run is keyed by its scheduled time
// and holds the planted differences and one summary.
func TestReconcileScheduled(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 100, ""), "")
	runPollers(t, h, 2)
	var summaries []string
	require.Eventually(t, func() bool {
		summaries = summaries[:0]
		for k := range h.events("customer_drift") {
			if strings.HasSuffix(k, ":summary") {
				summaries = append(summaries, k)
			}
		}
		return len(summaries) >= 2
	}, 20*time.Second, 50*time.Millisecond)
	events := h.events("customer_drift")
	for _, s := range summaries {
		run := strings.TrimSuffix(strings.TrimPrefix(s, "reconcile:"), ":summary")
		_, err := time.Parse(time.RFC3339Nano, run)
		require.NoError(t, err, "a scheduled run is named by its scheduled time")
		n := 0
		for k := range events {
			if strings.HasPrefix(k, "reconcile:"+run+":") {
				n++
			}
		}
		require.Equal(t, len(plantedDifferences)+1, n, "run %s", run)
	}
	st := h.state("customer_drift")
	require.Empty(t, st.LastError)
}

// TestReconcileRetryKeepsItsName: a scheduled reconciliation that fails is
// retried under the same run name, so differences a failed attempt may
// have stored are not emitted again under another.
func TestReconcileRetryKeepsItsName(t *testing.T) {
	t.Parallel()
	crm, acct := plantedSystems(t)
	h := newHarness(t, reconcileConfig(crm, acct, 100, ""), "")
	acct.mu.Lock()
	acct.pageSize = 5 // every mirror page is a 404 until fixed
	acct.mu.Unlock()
	runPollers(t, h, 1)
	require.Eventually(t, func() bool { return h.failures("customer_drift") >= 1 }, 20*time.Second, 20*time.Millisecond)
	name := h.state("customer_drift").Cursor
	_, err := time.Parse(time.RFC3339Nano, name)
	require.NoError(t, err, "the run in progress is named by its scheduled time")

	acct.mu.Lock()
	acct.pageSize = 4
	acct.mu.Unlock()
	require.Eventually(t, func() bool {
		_, ok := h.events("customer_drift")["reconcile:"+name+":summary"]
		return ok
	}, 20*time.Second, 20*time.Millisecond, "the retry succeeded under the failed run's name")
}
