package poll_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// harness is one node's poller on a real SQLite store and engine.
type harness struct {
	t      *testing.T
	plan   *flow.Plan
	st     store.Store
	eng    *engine.Engine
	poller *poll.Poller
	reg    *prometheus.Registry
	m      *metrics.Metrics
	dbPath string
}

func compile(t testing.TB, yaml string) *flow.Plan {
	t.Helper()
	c, err := config.Parse("poll.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	p, err := flow.Compile(c, all.Registry())
	require.NoError(t, err)
	return p
}

// pollConfig is a config with one poll source, jobs, over a's API, and one
// flow on it.
func pollConfig(a *fakeAPI, maxPages int) string {
	return fmt.Sprintf(`version: 1
systems:
  api: { kind: http, base_url: %s/api }
sources:
  jobs:
    poll:
      system: api
      every: 1s
      path: /jobs
      query: { since: $cursor }
      items: %s
      id: .id
      version: .updated_at
      cursor: .updated_at
      start: "2026-01-01T00:00:00Z"
      max_pages: %d
      %s
flows:
  sync:
    on: jobs
    steps:
      - { id: push, do: api.request, with: { path: '"/sink"' } }
`, a.srv.URL, a.items(), maxPages, a.paginate())
}

func newHarness(t *testing.T, yaml, dbPath string) *harness {
	t.Helper()
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "poll.db")
	}
	st, err := sqlite.Open(t.Context(), dbPath)
	require.NoError(t, err)
	h := newHarnessOn(t, yaml, st)
	h.dbPath = dbPath
	return h
}

// newPostgresHarness runs on a fresh PostgreSQL schema; it skips the test
// without SWITCHBOARD_TEST_POSTGRES.
func newPostgresHarness(t *testing.T, yaml string) *harness {
	t.Helper()
	st, err := postgres.Open(t.Context(), storetest.PostgresDSN(t), postgres.Options{Migrate: true})
	require.NoError(t, err)
	return newHarnessOn(t, yaml, st)
}

func newHarnessOn(t *testing.T, yaml string, st store.Store) *harness {
	t.Helper()
	h := &harness{t: t, plan: compile(t, yaml), reg: prometheus.NewRegistry(), st: st}
	m := metrics.New(h.reg)
	h.m = m
	h.eng = engine.New(engine.Config{Store: st, Plan: h.plan, Metrics: m, Fingerprints: st})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = st.Close()
	})
	h.poller = poll.New(poll.Config{
		Plan: h.plan, Store: st, Engine: h.eng, Metrics: m, Node: "node-" + t.Name(),
		Gates: delivery.NewGates(h.plan, nil), RetryBase: 10 * time.Millisecond, Recheck: 100 * time.Millisecond,
	})
	return h
}

func (h *harness) poll(source string) (poll.Stats, error) {
	return h.poller.Poll(h.t.Context(), h.plan.Sources[source], poll.Options{})
}

// keys returns the keys of source's stored events, sorted.
func (h *harness) keys(source string) []string {
	evs, err := h.st.ListEvents(h.t.Context(), store.ListEventsParams{Source: source, Limit: 10000})
	require.NoError(h.t, err)
	var out []string
	for _, e := range evs {
		out = append(out, e.Key)
	}
	slices.Sort(out)
	return out
}

func (h *harness) state(source string) store.PollState {
	st, ok, err := h.st.GetPollState(h.t.Context(), source)
	require.NoError(h.t, err)
	require.True(h.t, ok)
	return st
}

// failures reads a source's consecutive failures, 0 before its first run
// (safe inside Eventually, unlike state).
func (h *harness) failures(source string) int {
	st, _, err := h.st.GetPollState(context.Background(), source)
	if err != nil {
		return 0
	}
	return st.Failures
}

func keyOf(j job) string { return fmt.Sprintf("%d@%s", j.ID, j.UpdatedAt) }

func keysOf(jobs ...job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, keyOf(j))
	}
	slices.Sort(out)
	return out
}

// seed plants 23 jobs, several updated in the same second (the cursor's
// resolution), so pages end in the middle of a run of equal cursors.
func seed(a *fakeAPI) []job {
	var jobs []job
	for i := 1; i <= 23; i++ {
		jobs = append(jobs, job{ID: i, Status: "open", UpdatedAt: at(10 + i/3)})
	}
	a.put(jobs...)
	return jobs
}

var styles = []string{"token", "page", "offset", "link", "has_more"}

// TestEveryChangeOnce: across many polls, each new record and each change
// becomes exactly one event, in every paging style; unchanged records and
// records sharing the last cursor value are neither re-emitted nor missed.
func TestEveryChangeOnce(t *testing.T) {
	for _, style := range styles {
		t.Run(style, func(t *testing.T) {
			a := newFakeAPI(t, style, 4)
			h := newHarness(t, pollConfig(a, 100), "")
			want := seed(a)

			stats, err := h.poll("jobs")
			require.NoError(t, err)
			require.Equal(t, 23, stats.Emitted)
			require.GreaterOrEqual(t, stats.Pages, 6, "23 records in pages of 4 (position paging re-asks from the moved cursor)")
			require.Equal(t, at(10+23/3), stats.Cursor)
			require.Equal(t, keysOf(want...), h.keys("jobs"))

			// Nothing changed: the poll asks from the last cursor
			// inclusively, sees the records sharing it, emits nothing.
			stats, err = h.poll("jobs")
			require.NoError(t, err)
			require.Zero(t, stats.Emitted)
			require.Positive(t, stats.Unchanged)

			// Changes: one record updated at exactly the current cursor
			// (same second, after the poll), two later, one new.
			changed := []job{
				{ID: 50, Status: "open", UpdatedAt: at(10 + 23/3)},
				{ID: 3, Status: "done", UpdatedAt: at(40)},
				{ID: 7, Status: "done", UpdatedAt: at(41)},
				{ID: 60, Status: "open", UpdatedAt: at(41)},
			}
			a.put(changed...)
			want = append(want, changed...)
			stats, err = h.poll("jobs")
			require.NoError(t, err)
			require.Equal(t, 4, stats.Emitted)
			require.Equal(t, keysOf(want...), h.keys("jobs"))

			for range 3 {
				stats, err = h.poll("jobs")
				require.NoError(t, err)
				require.Zero(t, stats.Emitted)
			}
			require.Equal(t, keysOf(want...), h.keys("jobs"), "every change exactly once")

			runs, err := h.st.ListRuns(t.Context(), store.ListRunsParams{Flow: "sync", Limit: 1000})
			require.NoError(t, err)
			require.Len(t, runs, len(want), "one run per emitted record version")
		})
	}
}

// TestCursorSurvivesRestart: a new process on the same database continues
// from the stored cursor.
func TestCursorSurvivesRestart(t *testing.T) {
	a := newFakeAPI(t, "token", 5)
	seed(a)
	dbPath := filepath.Join(t.TempDir(), "poll.db")
	func() {
		h := newHarness(t, pollConfig(a, 100), dbPath)
		_, err := h.poll("jobs")
		require.NoError(t, err)
		require.NoError(t, h.st.Close())
	}()

	a.put(job{ID: 99, Status: "new", UpdatedAt: at(100)})
	h := newHarness(t, pollConfig(a, 100), dbPath)
	before := len(a.log())
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 1, stats.Emitted, "only the change made while it was down")
	first := a.log()[before]
	require.Contains(t, first, "since="+strings.ReplaceAll(at(10+23/3), ":", "%3A"), "the restarted poll starts from the stored cursor")
	require.Len(t, h.keys("jobs"), 24)
}

// TestErrorOnMiddlePage: a 500 on page 3 (after the retries) fails the run
// with the cursor after page 2; the next run continues from there and
// nothing is skipped or emitted twice.
func TestErrorOnMiddlePage(t *testing.T) {
	for _, style := range styles {
		t.Run(style, func(t *testing.T) {
			a := newFakeAPI(t, style, 4)
			want := seed(a)
			h := newHarness(t, pollConfig(a, 100), "")
			a.failOn(3, 500, 100, "")

			stats, err := h.poll("jobs")
			require.ErrorContains(t, err, "page 3")
			require.ErrorContains(t, err, "500")
			require.Equal(t, 2, stats.Pages)
			n := len(h.keys("jobs"))
			require.Equal(t, stats.Emitted, n)
			require.GreaterOrEqual(t, n, 6, "two pages of four, less what a re-ask from the cursor read twice")
			require.Equal(t, keysOf(want[:n]...), h.keys("jobs"), "what was stored is the start of the listing")
			require.Equal(t, want[n-1].UpdatedAt, h.state("jobs").Cursor, "the cursor is that of page 2's last record")

			a.failOn(0, 0, 0, "")
			stats, err = h.poll("jobs")
			require.NoError(t, err)
			require.Equal(t, 23-n, stats.Emitted)
			require.Equal(t, keysOf(want...), h.keys("jobs"))
		})
	}
}

// TestTransientErrorsAreRetried: a page that fails twice and then answers
// is read within the run; a 429's Retry-After is honoured.
func TestTransientErrorsAreRetried(t *testing.T) {
	a := newFakeAPI(t, "page", 4)
	seed(a)
	h := newHarness(t, pollConfig(a, 100), "")
	a.failOn(2, 503, 2, "")
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 23, stats.Emitted)

	a.put(job{ID: 70, UpdatedAt: at(90)})
	a.failOn(1, 429, 1, "1")
	started := time.Now()
	stats, err = h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 1, stats.Emitted)
	require.GreaterOrEqual(t, time.Since(started), 900*time.Millisecond, "waited for Retry-After: 1")
}

// TestPermanentErrorFailsAtOnce: a 404 is not retried.
func TestPermanentErrorFailsAtOnce(t *testing.T) {
	a := newFakeAPI(t, "page", 4)
	seed(a)
	h := newHarness(t, pollConfig(a, 100), "")
	a.failOn(1, 404, 100, "")
	_, err := h.poll("jobs")
	require.ErrorContains(t, err, "404")
	require.Len(t, a.log(), 1)
}

// TestPageLimit: a run stops at max_pages and says more is left; the next
// run continues from the cursor.
func TestPageLimit(t *testing.T) {
	a := newFakeAPI(t, "offset", 4)
	want := seed(a)
	h := newHarness(t, pollConfig(a, 2), "")
	total := 0
	for i := 0; ; i++ {
		require.Less(t, i, 10, "the poll never finished")
		stats, err := h.poll("jobs")
		require.NoError(t, err)
		require.LessOrEqual(t, stats.Pages, 2)
		total += stats.Emitted
		if !stats.More {
			break
		}
	}
	require.Equal(t, 23, total)
	require.Equal(t, keysOf(want...), h.keys("jobs"))
}

// TestNoPaginationNoCursor: a source without paging or cursor lists
// everything each run and emits only what changed.
func TestNoPaginationNoCursor(t *testing.T) {
	a := newFakeAPI(t, "none", 4)
	seed(a)
	h := newHarness(t, fmt.Sprintf(`version: 1
systems:
  api: { kind: http, base_url: %s/api }
sources:
  jobs:
    poll:
      system: api
      cron: "0 2 * * *"
      timezone: Europe/Paris
      path: /jobs
      items: .jobs[]
      id: .id
flows:
  sync:
    on: jobs
    steps: [ { id: push, do: api.request, with: { path: '"/sink"' } } ]
`, a.srv.URL), "")
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 23, stats.Emitted)
	a.put(job{ID: 5, Status: "moved", UpdatedAt: at(11)}) // same updated_at, new content
	stats, err = h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 1, stats.Emitted, "the default version is a hash of the record")
	require.Equal(t, 22, stats.Unchanged)
	require.Len(t, h.keys("jobs"), 24)
}

// TestBackstop: a poll backing up a webhook source stores what the
// webhooks missed as that source's events, and nothing the webhooks
// delivered; the lost webhooks are counted.
func TestBackstop(t *testing.T) {
	a := newFakeAPI(t, "token", 10)
	jobs := seed(a)
	h := newHarness(t, fmt.Sprintf(`version: 1
systems:
  api: { kind: http, base_url: %s/api }
sources:
  job_hooks:
    webhook: {}
    record_id: .id
    version: .updated_at
  job_poll:
    poll:
      system: api
      every: 5m
      path: /jobs
      query: { since: $cursor }
      items: .jobs[]
      id: .id
      version: .updated_at
      cursor: .updated_at
      start: "2026-01-01T00:00:00Z"
      paginate: { next: .next, param: page_token }
      backstop_for: job_hooks
flows:
  sync:
    on: job_hooks
    steps: [ { id: push, do: api.request, with: { path: '"/sink"' } } ]
`, a.srv.URL), "")
	// The webhooks delivered all but jobs 4, 9 and 17.
	lost := map[int]bool{4: true, 9: true, 17: true}
	for _, j := range jobs {
		if lost[j.ID] {
			continue
		}
		src := h.plan.Sources["job_hooks"]
		value := map[string]any{"id": j.ID, "status": j.Status, "updated_at": j.UpdatedAt}
		id, version, err := src.RecordOf(t.Context(), value)
		require.NoError(t, err)
		_, err = h.eng.Accept(t.Context(), engine.Event{Source: "job_hooks", Key: flow.RecordKey(id, version), Payload: []byte("{}"), Value: value})
		require.NoError(t, err)
	}
	stats, err := h.poll("job_poll")
	require.NoError(t, err)
	require.Equal(t, 3, stats.Emitted)
	require.Equal(t, 20, stats.Known)
	require.Equal(t, keysOf(jobs...), h.keys("job_hooks"), "the poll filled exactly the gaps")
	require.Empty(t, h.keys("job_poll"))

	got, err := metricstest.Series(h.reg, "switchboard_backstop_found_total", "switchboard_poll_records_total")
	require.NoError(t, err)
	require.Equal(t, 3.0, got[`switchboard_backstop_found_total{source="job_hooks"}`])
	require.Equal(t, 20.0, got[`switchboard_poll_records_total{result="known",source="job_poll"}`])
	got, err = metricstest.Series(h.reg, "switchboard_events_received_total")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{
		`switchboard_events_received_total{outcome="accepted",source="job_hooks"}`:  3,
		`switchboard_events_received_total{outcome="duplicate",source="job_hooks"}`: 20,
	}, got, "polled records count as events of the webhook source they back up (the test's webhooks bypass ingest)")

	// A webhook arriving late for a record the poll found is a duplicate.
	src := h.plan.Sources["job_hooks"]
	j := jobs[3]
	id, version, err := src.RecordOf(t.Context(), map[string]any{"id": j.ID, "updated_at": j.UpdatedAt})
	require.NoError(t, err)
	acc, err := h.eng.Accept(t.Context(), engine.Event{Source: "job_hooks", Key: flow.RecordKey(id, version), Payload: []byte("{}")})
	require.NoError(t, err)
	require.True(t, acc.Duplicate)
}

// TestPageLimitThatWouldLoop: when a run stops at max_pages without moving
// its cursor (or the source keeps none), the next run would read the same
// pages forever; the run fails and says so instead.
func TestPageLimitThatWouldLoop(t *testing.T) {
	a := newFakeAPI(t, "token", 2)
	var jobs []job
	for i := 1; i <= 10; i++ {
		jobs = append(jobs, job{ID: i, UpdatedAt: at(5)}) // all in the same second
	}
	a.put(jobs...)
	h := newHarness(t, pollConfig(a, 2), "")
	stats, err := h.poll("jobs")
	require.NoError(t, err, "the first run moves the cursor from start to the shared value")
	require.True(t, stats.More)
	_, err = h.poll("jobs")
	require.ErrorContains(t, err, `2 pages of records share the cursor "2026-01-01T00:00:05Z", so the next run would read the same pages; raise max_pages`)

	b := newFakeAPI(t, "token", 2)
	b.put(jobs...)
	h = newHarness(t, strings.Replace(pollConfig(b, 2), "      cursor: .updated_at\n      start: \"2026-01-01T00:00:00Z\"\n", "", 1), "")
	_, err = h.poll("jobs")
	require.ErrorContains(t, err, "the listing has more than max_pages (2) pages and the source keeps no cursor")
}

// TestPolledEchoIsSuppressed: a polled record that is only our own write
// coming back (its written fields match a recent fingerprint) is stored as
// an echo and starts no run, as a webhook would be.
func TestPolledEchoIsSuppressed(t *testing.T) {
	a := newFakeAPI(t, "token", 10)
	seed(a)
	h := newHarness(t, strings.Replace(pollConfig(a, 100), "sources:\n  jobs:\n", "entities:\n  job: { owner: api }\nsources:\n  jobs:\n    entity: job\n", 1), "")
	_, err := h.poll("jobs")
	require.NoError(t, err)

	// Our flow set job 3's status to "done" in the field app a moment ago.
	written := map[string]any{"status": "done"}
	fp := echo.Of(written)
	require.NoError(t, h.st.SaveFingerprint(t.Context(), store.Fingerprint{
		ID: "idem-1", System: "api", Entity: "job", RecordID: "3", Fields: fp.Fields, Hash: fp.Hash,
		RunID: "run_1", Hop: 1, Chain: "web_form → api job 3", CreatedAt: time.Now(),
	}))
	a.put(job{ID: 3, Status: "done", UpdatedAt: at(60)}, job{ID: 4, Status: "cancelled", UpdatedAt: at(61)})
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 2, stats.Emitted)

	evs, err := h.st.ListEvents(t.Context(), store.ListEventsParams{Source: "jobs", Limit: 100})
	require.NoError(t, err)
	byKey := map[string]store.Event{}
	for _, e := range evs {
		byKey[e.Key] = e
	}
	echoed := byKey["3@"+at(60)]
	l, err := h.st.GetLineage(t.Context(), echoed.ID)
	require.NoError(t, err)
	require.Equal(t, store.EventEcho, l.Outcome)
	require.Equal(t, 1, l.Hop)
	runs, err := h.st.ListRuns(t.Context(), store.ListRunsParams{EventID: echoed.ID})
	require.NoError(t, err)
	require.Empty(t, runs, "an echo starts no run")
	runs, err = h.st.ListRuns(t.Context(), store.ListRunsParams{EventID: byKey["4@"+at(61)].ID})
	require.NoError(t, err)
	require.Len(t, runs, 1, "a person's change runs")
	got, err := metricstest.Series(h.reg, "switchboard_events_received_total")
	require.NoError(t, err)
	require.Equal(t, 1.0, got[`switchboard_events_received_total{outcome="echo",source="jobs"}`])
}

// TestChangeDuringRunSkipsNothing: a record that changes while a run pages
// through the listing moves to its end, and the records behind it move up
// a place. Paging by position would then skip one for good; the poll asks
// the next page from the moved cursor instead, in every style.
func TestChangeDuringRunSkipsNothing(t *testing.T) {
	for _, style := range styles {
		t.Run(style, func(t *testing.T) {
			a := newFakeAPI(t, style, 4)
			var want []job
			for i := 1; i <= 12; i++ {
				want = append(want, job{ID: i, Status: "open", UpdatedAt: at(10 + i)})
			}
			a.put(want...)
			a.before = func(n int, jobs map[int]job) {
				if n == 2 { // between page 1 and page 2, job 2 is edited
					jobs[2] = job{ID: 2, Status: "done", UpdatedAt: at(100)}
				}
			}
			h := newHarness(t, pollConfig(a, 100), "")
			_, err := h.poll("jobs")
			require.NoError(t, err)
			want = append(want, job{ID: 2, Status: "done", UpdatedAt: at(100)})
			require.Equal(t, keysOf(want...), h.keys("jobs"), "every record and the change, none skipped")
		})
	}
}

// TestBackfillSharesSeenVersions: a backfill keeps its own cursor but the
// source's seen versions, so it does not emit again what the scheduled
// poll saw, even after retention deleted those events.
func TestBackfillSharesSeenVersions(t *testing.T) {
	a := newFakeAPI(t, "token", 5)
	seed(a)
	cfg := pollConfig(a, 100)
	h := newHarness(t, cfg[:strings.Index(cfg, "flows:")], "") // no flows: events with no runs can expire
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 23, stats.Emitted)
	r, err := h.st.DeleteExpired(t.Context(), store.DeleteParams{Before: time.Now().Add(time.Hour), Limit: 1000})
	require.NoError(t, err)
	require.Equal(t, 23, r.Deleted, "retention deleted the events")

	since := "2026-01-01T00:00:00Z"
	stats, err = h.poller.Poll(t.Context(), h.plan.Sources["jobs"], poll.Options{StateKey: "backfill:jobs", Cursor: &since, MaxPages: -1})
	require.NoError(t, err)
	require.Zero(t, stats.Emitted, "nothing the scheduled poll saw is emitted again")
	require.GreaterOrEqual(t, stats.Unchanged, 23)
	require.Equal(t, at(10+23/3), h.state("jobs").Cursor, "the scheduled poll's cursor is left alone")
	_, ok, err := h.st.GetPollState(t.Context(), "backfill:jobs")
	require.NoError(t, err)
	require.True(t, ok, "the backfill keeps its own cursor")
}

// TestChangeAmongEqualCursorsSkipsNothing: records sharing one cursor
// value (a bulk update in one second) are read by position; one of them
// edited mid-run moves to the end and everything behind it moves up a
// place, so the next page starts one record later. None may be lost.
func TestChangeAmongEqualCursorsSkipsNothing(t *testing.T) {
	for _, style := range styles {
		t.Run(style, func(t *testing.T) {
			a := newFakeAPI(t, style, 4)
			var want []job
			for i := 1; i <= 8; i++ {
				want = append(want, job{ID: i, Status: "open", UpdatedAt: at(10)})
			}
			for i := 9; i <= 12; i++ {
				want = append(want, job{ID: i, Status: "open", UpdatedAt: at(i)})
			}
			a.put(want...)
			a.before = func(n int, jobs map[int]job) {
				if n == 3 {
					jobs[1] = job{ID: 1, Status: "done", UpdatedAt: at(100)}
				}
			}
			h := newHarness(t, pollConfig(a, 100), "")
			for range 3 {
				_, err := h.poll("jobs")
				require.NoError(t, err)
			}
			want = append(want, job{ID: 1, Status: "done", UpdatedAt: at(100)})
			require.Equal(t, keysOf(want...), h.keys("jobs"), "every record and the change, none skipped")
		})
	}
}

// TestLeavingAStretchAtThePageLimit: a run that leaves a stretch of equal
// cursor values on its last allowed page moves the cursor on (it has no
// page left to read the stretch again): the next run continues, no
// "pages share the cursor" error.
func TestLeavingAStretchAtThePageLimit(t *testing.T) {
	a := newFakeAPI(t, "offset", 4)
	var want []job
	for i := 1; i <= 8; i++ {
		want = append(want, job{ID: i, Status: "open", UpdatedAt: at(10)})
	}
	for i := 9; i <= 16; i++ {
		want = append(want, job{ID: i, Status: "open", UpdatedAt: at(i)})
	}
	a.put(want...)
	h := newHarness(t, pollConfig(a, 3), "")
	for range 4 {
		_, err := h.poll("jobs")
		require.NoError(t, err)
	}
	require.Equal(t, keysOf(want...), h.keys("jobs"))
}

// TestStretchReReadThatDoesNotFitMovesOn: a stretch of equal cursor values
// whose second reading would not fit in the pages left (three pages of
// them, six pages allowed) is left as before the re-read existed: the
// cursor moves on, and no run stops on "pages share the cursor" for good.
func TestStretchReReadThatDoesNotFitMovesOn(t *testing.T) {
	a := newFakeAPI(t, "offset", 4)
	var want []job
	for i := 1; i <= 12; i++ {
		want = append(want, job{ID: i, Status: "open", UpdatedAt: at(10)})
	}
	for i := 13; i <= 14; i++ {
		want = append(want, job{ID: i, Status: "open", UpdatedAt: at(i)})
	}
	a.put(want...)
	h := newHarness(t, pollConfig(a, 6), "")
	for range 3 {
		_, err := h.poll("jobs")
		require.NoError(t, err)
	}
	require.Equal(t, keysOf(want...), h.keys("jobs"))
}
