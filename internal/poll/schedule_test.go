package poll_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// runPollers runs n pollers (n nodes) on h's store until the test ends.
func runPollers(t *testing.T, h *harness, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		p := h.poller
		if i > 0 {
			p = poll.New(poll.Config{Plan: h.plan, Store: h.st, Engine: h.eng, Metrics: h.m, Node: fmt.Sprintf("node-%d", i),
				Gates: delivery.NewGates(h.plan, nil), RetryBase: 10 * time.Millisecond, Recheck: 100 * time.Millisecond})
		}
		wg.Go(func() { _ = p.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// tickConfig is a schedule source ticking every second, and a flow on it.
const tickConfig = `version: 1
systems:
  api: { kind: http, base_url: http://127.0.0.1:1/api }
sources:
  tick:
    schedule: { every: 1s }
flows:
  nightly:
    on: tick
    steps: [ { id: push, do: api.request, with: { path: '"/x"' } } ]
`

// scheduledTimes reads the scheduled times of the tick events h stored,
// checking that each names its source and fired no earlier.
func scheduledTimes(t *testing.T, h *harness) []time.Time {
	t.Helper()
	evs, err := h.st.ListEvents(t.Context(), store.ListEventsParams{Source: "tick", Limit: 100})
	require.NoError(t, err)
	var times []time.Time
	for _, e := range evs {
		var v struct {
			Source      string    `json:"source"`
			ScheduledAt time.Time `json:"scheduled_at"`
			FiredAt     time.Time `json:"fired_at"`
		}
		require.NoError(t, json.Unmarshal(e.Payload, &v))
		require.Equal(t, "tick", v.Source)
		require.False(t, v.FiredAt.Before(v.ScheduledAt))
		times = append(times, v.ScheduledAt)
	}
	return times
}

// TestScheduleTicksOnce: two nodes run a schedule source; each tick is
// emitted once, one scheduled second after the other.
func TestScheduleTicksOnce(t *testing.T) {
	h := newHarness(t, tickConfig, "")
	runPollers(t, h, 2)
	require.Eventually(t, func() bool { return len(h.keys("tick")) >= 3 }, 15*time.Second, 50*time.Millisecond)

	times := scheduledTimes(t, h)
	seen := map[time.Time]bool{}
	for _, tm := range times {
		require.False(t, seen[tm], "tick %s emitted twice", tm)
		seen[tm] = true
	}
	runs, err := h.st.ListRuns(t.Context(), store.ListRunsParams{Flow: "nightly", Limit: 100})
	require.NoError(t, err)
	require.Len(t, runs, len(times))
}

// failNthName fails the nth store of a run's name (a CommitPollPage that
// sets the cursor): the database was busy at that moment.
type failNthName struct {
	poll.Store
	n     int
	calls int // only the one poller touches it
}

func (f *failNthName) CommitPollPage(ctx context.Context, p store.PollPage) ([]store.PollResult, error) {
	if p.SetCursor && len(p.Records) == 0 {
		f.calls++
		if f.calls == f.n {
			return nil, errors.New("database is locked")
		}
	}
	return f.Store.CommitPollPage(ctx, p)
}

// TestTickNotLostWhenItsNameIsNotStored: when storing a tick's name (its
// scheduled time, the source's cursor) fails, the retry emits that tick,
// named by its own time; it used to reuse the cursor, which still named the
// previous tick, and that repeat was dropped as a duplicate: the tick was
// lost.
func TestTickNotLostWhenItsNameIsNotStored(t *testing.T) {
	h := newHarness(t, tickConfig, "")
	p := poll.New(poll.Config{Plan: h.plan, Store: &failNthName{Store: h.st, n: 2}, Engine: h.eng, Metrics: h.m, Node: "node-x",
		Gates: delivery.NewGates(h.plan, nil), RetryBase: 10 * time.Millisecond, Recheck: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return len(h.keys("tick")) >= 3 }, 15*time.Second, 50*time.Millisecond)

	times := scheduledTimes(t, h)
	slices.SortFunc(times, time.Time.Compare)
	for i := 1; i < 3; i++ {
		require.Less(t, times[i].Sub(times[i-1]), 1900*time.Millisecond, "a tick is missing between %s and %s", times[i-1], times[i])
	}
}

// TestPollerFollowsChanges: the scheduled poller picks up changes made
// between its runs, records its runs, and backs off after failures.
func TestPollerFollowsChanges(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		a := newFakeAPI(t, "token", 4)
		pollerFollowsChanges(t, a, newHarness(t, pollConfig(a, 100), ""))
	})
	t.Run("postgres", func(t *testing.T) {
		a := newFakeAPI(t, "token", 4)
		pollerFollowsChanges(t, a, newPostgresHarness(t, pollConfig(a, 100)))
	})
}

func pollerFollowsChanges(t *testing.T, a *fakeAPI, h *harness) {
	want := seed(a)
	runPollers(t, h, 2)
	require.Eventually(t, func() bool { return len(h.keys("jobs")) == len(want) }, 15*time.Second, 50*time.Millisecond)

	extra := job{ID: 400, Status: "new", UpdatedAt: at(500)}
	a.put(extra)
	want = append(want, extra)
	require.Eventually(t, func() bool { return len(h.keys("jobs")) == len(want) }, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, keysOf(want...), h.keys("jobs"))
	st := h.state("jobs")
	require.Equal(t, at(500), st.Cursor)
	require.False(t, st.LastOKAt.IsZero())
	require.Zero(t, st.Failures)

	a.failOn(1, 500, 1000, "")
	require.Eventually(t, func() bool { return h.failures("jobs") >= 1 }, 15*time.Second, 50*time.Millisecond)
	st = h.state("jobs")
	require.Contains(t, st.LastError, "500")
	require.True(t, st.NextRunAt.After(st.LastRunAt), "a failed run is tried again later")

	got, err := metricstest.Series(h.reg, "switchboard_poll_runs_total")
	require.NoError(t, err)
	require.Positive(t, got[`switchboard_poll_runs_total{outcome="ok",source="jobs"}`]+got[`switchboard_poll_runs_total{outcome="error",source="jobs"}`])
}

// TestPollRespectsRateLimit: pages go through the system's rate limit,
// shared with its steps: never more requests in a second than allowed.
func TestPollRespectsRateLimit(t *testing.T) {
	a := newFakeAPI(t, "token", 2)
	seed(a)
	yaml := strings.Replace(pollConfig(a, 100), "api: { kind: http, base_url: "+a.srv.URL+"/api }",
		"api: { kind: http, base_url: "+a.srv.URL+"/api, rate_limit: { per_second: 4 } }", 1)
	h := newHarness(t, yaml, "")
	stats, err := h.poll("jobs")
	require.NoError(t, err)
	require.Equal(t, 23, stats.Emitted)
	times := a.times()
	require.Len(t, times, stats.Pages)
	require.Greater(t, len(times), 8, "enough requests to span several seconds")
	// The times are arrivals at the server: a request held up on its way
	// (a loaded machine) lets the ones after it arrive closer, so one more
	// than the limit may land in a second. Without the limit every page
	// arrives within a few milliseconds.
	for i := range times {
		n := 0
		for _, x := range times[i:] {
			if x.Sub(times[i]) < time.Second {
				n++
			}
		}
		require.LessOrEqual(t, n, 4+1, "requests in the second from request %d", i)
	}
}

// TestConfigErrorWaitsForTheSchedule: a failure only a config change can
// fix (here: more pages share one cursor than max_pages) is not retried
// before the source's next scheduled run.
func TestConfigErrorWaitsForTheSchedule(t *testing.T) {
	a := newFakeAPI(t, "token", 2)
	var jobs []job
	for i := 1; i <= 10; i++ {
		jobs = append(jobs, job{ID: i, UpdatedAt: at(5)})
	}
	a.put(jobs...)
	h := newHarness(t, strings.Replace(pollConfig(a, 2), "every: 1s", "every: 1h", 1), "")
	runPollers(t, h, 1)
	require.Eventually(t, func() bool { return h.failures("jobs") == 1 }, 15*time.Second, 20*time.Millisecond)
	st := h.state("jobs")
	require.Contains(t, st.LastError, "raise max_pages")
	require.True(t, st.NextRunAt.After(time.Now().Add(50*time.Minute)), "next run at the next tick, not after a short back-off: %s", st.NextRunAt)
}

// TestPollRunsAfterClockSetBack: a poll's next run stored under a clock that
// was an hour ahead (a host that booted before its clock was synchronised,
// then NTP stepped it back) does not stop the source for that hour: a next
// run further away than the schedule allows runs now.
func TestPollRunsAfterClockSetBack(t *testing.T) {
	a := newFakeAPI(t, "token", 4)
	want := seed(a)
	h := newHarness(t, pollConfig(a, 100), "")
	ahead := time.Now().Add(time.Hour)
	require.NoError(t, h.st.FinishPoll(t.Context(), store.PollRun{Source: "jobs", Now: ahead, NextRunAt: ahead.Add(time.Second)}))
	runPollers(t, h, 1)
	require.Eventually(t, func() bool { return len(h.keys("jobs")) == len(want) }, 15*time.Second, 50*time.Millisecond)
	st := h.state("jobs")
	require.True(t, st.NextRunAt.Before(time.Now().Add(time.Minute)), "scheduled from the run, not from the stored time: %s", st.NextRunAt)
}
