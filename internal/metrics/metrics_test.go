package metrics

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// fakeStats is a StatsReader answering what the test last set.
type fakeStats struct {
	mu    sync.Mutex // guards the fields below
	stats []store.FlowStats
	err   error
	calls int
	// took is how long each read takes (fake time, under synctest).
	took time.Duration
}

func (f *fakeStats) QueueStats(context.Context) ([]store.FlowStats, error) {
	f.mu.Lock()
	took := f.took
	f.calls++
	stats, err := f.stats, f.err
	f.mu.Unlock()
	time.Sleep(took)
	return stats, err
}

func (f *fakeStats) set(stats []store.FlowStats, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats, f.err = stats, err
}

func (f *fakeStats) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var sampleNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const gaugesHelp = `
# HELP switchboard_queue_depth Runs waiting to execute (pending or retrying), by flow.
# TYPE switchboard_queue_depth gauge
# HELP switchboard_oldest_pending_seconds Age of the oldest waiting run, by flow; 0 when none waits.
# TYPE switchboard_oldest_pending_seconds gauge
# HELP switchboard_dead_runs Runs in the dead-letter state, by flow.
# TYPE switchboard_dead_runs gauge
`

var gaugeNames = []string{"switchboard_queue_depth", "switchboard_oldest_pending_seconds", "switchboard_dead_runs"}

func TestSamplerSetsEveryConfiguredFlow(t *testing.T) {
	t.Parallel()
	m := New(prometheus.NewRegistry())
	st := &fakeStats{}
	st.set([]store.FlowStats{
		{Flow: "billing", Waiting: 3, Running: 1, Dead: 2, OldestWaiting: sampleNow.Add(-90 * time.Second)},
		{Flow: "leads", Dead: 1},
		// A flow removed from the config: its runs are still in the store,
		// but it must not become a label value.
		{Flow: "removed", Waiting: 7, OldestWaiting: sampleNow.Add(-time.Hour)},
	}, nil)
	s := NewSampler(m, st, []string{"billing", "leads", "quiet"}, time.Second, func() time.Time { return sampleNow })

	require.NoError(t, s.Sample(t.Context()))

	require.InDelta(t, 3, testutil.ToFloat64(m.queueDepth.WithLabelValues("billing")), 0)
	require.InDelta(t, 90, testutil.ToFloat64(m.oldestPending.WithLabelValues("billing")), 0)
	require.InDelta(t, 2, testutil.ToFloat64(m.deadRuns.WithLabelValues("billing")), 0)
	require.NoError(t, testutil.CollectAndCompare(m.queueDepth, strings.NewReader(`
# HELP switchboard_queue_depth Runs waiting to execute (pending or retrying), by flow.
# TYPE switchboard_queue_depth gauge
switchboard_queue_depth{flow="billing"} 3
switchboard_queue_depth{flow="leads"} 0
switchboard_queue_depth{flow="quiet"} 0
`)))
	require.NoError(t, testutil.CollectAndCompare(m.oldestPending, strings.NewReader(`
# HELP switchboard_oldest_pending_seconds Age of the oldest waiting run, by flow; 0 when none waits.
# TYPE switchboard_oldest_pending_seconds gauge
switchboard_oldest_pending_seconds{flow="billing"} 90
switchboard_oldest_pending_seconds{flow="leads"} 0
switchboard_oldest_pending_seconds{flow="quiet"} 0
`)))
	require.NoError(t, testutil.CollectAndCompare(m.deadRuns, strings.NewReader(`
# HELP switchboard_dead_runs Runs in the dead-letter state, by flow.
# TYPE switchboard_dead_runs gauge
switchboard_dead_runs{flow="billing"} 2
switchboard_dead_runs{flow="leads"} 1
switchboard_dead_runs{flow="quiet"} 0
`)))
}

func TestSamplerZeroesADrainedFlow(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	st := &fakeStats{}
	st.set([]store.FlowStats{{Flow: "billing", Waiting: 5, OldestWaiting: sampleNow.Add(-time.Minute)}}, nil)
	s := NewSampler(m, st, []string{"billing"}, time.Second, func() time.Time { return sampleNow })
	require.NoError(t, s.Sample(t.Context()))
	require.InDelta(t, 5, testutil.ToFloat64(m.queueDepth.WithLabelValues("billing")), 0)
	require.InDelta(t, 60, testutil.ToFloat64(m.oldestPending.WithLabelValues("billing")), 0)

	// Drained: the store no longer reports the flow at all.
	st.set(nil, nil)
	require.NoError(t, s.Sample(t.Context()))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gaugesHelp+`
switchboard_queue_depth{flow="billing"} 0
switchboard_oldest_pending_seconds{flow="billing"} 0
switchboard_dead_runs{flow="billing"} 0
`), gaugeNames...))
}

func TestSamplerKeepsGaugesWhenTheStoreFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	st := &fakeStats{}
	st.set([]store.FlowStats{{Flow: "billing", Waiting: 2, Dead: 1, OldestWaiting: sampleNow.Add(-time.Second)}}, nil)
	s := NewSampler(m, st, []string{"billing"}, time.Second, func() time.Time { return sampleNow })
	require.NoError(t, s.Sample(t.Context()))

	// An outage must not read as an empty queue.
	st.set(nil, errors.New("database is locked"))
	require.Error(t, s.Sample(t.Context()))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gaugesHelp+`
switchboard_queue_depth{flow="billing"} 2
switchboard_oldest_pending_seconds{flow="billing"} 1
switchboard_dead_runs{flow="billing"} 1
`), gaugeNames...))
}

func TestSamplerRunSamplesAtOnceThenEveryInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := New(prometheus.NewRegistry())
		st := &fakeStats{}
		st.set([]store.FlowStats{{Flow: "billing", Waiting: 4}}, nil)
		s := NewSampler(m, st, []string{"billing"}, 0, nil) // default interval
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		synctest.Wait()
		require.Equal(t, 1, st.callCount(), "the first sample is taken at once")
		require.InDelta(t, 4, testutil.ToFloat64(m.queueDepth.WithLabelValues("billing")), 0)

		st.set(nil, nil)
		time.Sleep(DefaultSampleEvery - time.Millisecond)
		synctest.Wait()
		require.Equal(t, 1, st.callCount())
		time.Sleep(time.Millisecond)
		synctest.Wait()
		require.Equal(t, 2, st.callCount())
		require.InDelta(t, 0, testutil.ToFloat64(m.queueDepth.WithLabelValues("billing")), 0)

		time.Sleep(3 * DefaultSampleEvery)
		synctest.Wait()
		require.Equal(t, 5, st.callCount())

		cancel()
		require.NoError(t, <-done)
	})
}

// TestSamplerBacksOffSlowReads: a read that takes long (a big backlog)
// stretches the interval to ten times the read, so sampling never takes
// more than a tenth of the store's time.
func TestSamplerBacksOffSlowReads(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStats{took: 2 * time.Second}
		s := NewSampler(New(prometheus.NewRegistry()), st, []string{"billing"}, 5*time.Second, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		synctest.Wait()
		require.Equal(t, 1, st.callCount(), "the first sample is taken at once")
		time.Sleep(20*time.Second - time.Millisecond) // 2 s read, then 18 s of pause
		synctest.Wait()
		require.Equal(t, 1, st.callCount())
		time.Sleep(time.Millisecond)
		synctest.Wait()
		require.Equal(t, 2, st.callCount())

		st.mu.Lock()
		st.took = 0 // the backlog drained
		st.mu.Unlock()
		time.Sleep(2*time.Second + 18*time.Second + 5*time.Second)
		synctest.Wait()
		require.Equal(t, 4, st.callCount(), "back to every interval")

		cancel()
		require.NoError(t, <-done)
	})
}

func TestCounters(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)

	m.EventReceived("orders", OutcomeAccepted)
	m.EventReceived("orders", OutcomeAccepted)
	m.EventReceived(UnknownSource, OutcomeUnknownSource)
	m.RunsCreated("deliver", 3)
	m.RunsCreated("deliver", 0)
	m.RunTransition("deliver", store.RunRetrying, time.Hour) // no lag: not done
	m.RunTransition("deliver", store.RunSucceeded, 2*time.Second)
	m.RunTransition("deliver", store.RunDead, 30*time.Second)
	m.StepAttempt("deliver", "post", "crm", store.AttemptRetry)
	m.StepAttempt("deliver", "post", "crm", store.AttemptSucceeded)
	m.StepDuration("crm", 20*time.Millisecond)
	m.DeliveryDelay("orders", -time.Second) // clock skew reads as 0

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP switchboard_events_received_total Webhook requests answered, by source and outcome (accepted, duplicate, rejected_*, unknown_source, unavailable).
# TYPE switchboard_events_received_total counter
switchboard_events_received_total{outcome="accepted",source="orders"} 2
switchboard_events_received_total{outcome="unknown_source",source="unknown"} 1
# HELP switchboard_runs_total Run transitions committed, by flow and state: created, retrying, succeeded, dead.
# TYPE switchboard_runs_total counter
switchboard_runs_total{flow="deliver",state="created"} 3
switchboard_runs_total{flow="deliver",state="dead"} 1
switchboard_runs_total{flow="deliver",state="retrying"} 1
switchboard_runs_total{flow="deliver",state="succeeded"} 1
# HELP switchboard_step_attempts_total Step attempts recorded, by flow, step, system and outcome (succeeded, retry, dead).
# TYPE switchboard_step_attempts_total counter
switchboard_step_attempts_total{flow="deliver",outcome="retry",step="post",system="crm"} 1
switchboard_step_attempts_total{flow="deliver",outcome="succeeded",step="post",system="crm"} 1
`), "switchboard_events_received_total", "switchboard_runs_total", "switchboard_step_attempts_total"))

	// One series per label set, whatever the number of observations.
	require.Equal(t, 1, testutil.CollectAndCount(m.lag))
	require.Equal(t, 1, testutil.CollectAndCount(m.stepDuration))
	require.Equal(t, 1, testutil.CollectAndCount(m.deliveryDelay))
}

func TestHistograms(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.RunTransition("deliver", store.RunRetrying, time.Hour)
	m.RunTransition("deliver", store.RunSucceeded, 2*time.Second)
	m.RunTransition("deliver", store.RunDead, 30*time.Second)
	m.DeliveryDelay("orders", -time.Second)
	m.DeliveryDelay("orders", 3*time.Second)

	got := map[string][2]float64{} // name -> count, sum
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, s := range f.GetMetric() {
			if h := s.GetHistogram(); h != nil {
				got[f.GetName()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
			}
		}
	}
	require.Equal(t, map[string][2]float64{
		"switchboard_lag_seconds":            {2, 32},
		"switchboard_delivery_delay_seconds": {2, 3},
	}, got)
}

func TestCommitQueue(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	n := 0
	m.WatchCommitQueue("engine", func() int { return 7 })
	m.WatchCommitQueue("finisher", func() int { n++; return n })
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP switchboard_commit_queue Items waiting for a group commit, by queue (engine: inbound events, finisher: attempt results).
# TYPE switchboard_commit_queue gauge
switchboard_commit_queue{queue="engine"} 7
switchboard_commit_queue{queue="finisher"} 1
`), "switchboard_commit_queue"))
	require.Equal(t, 2, testutil.CollectAndCount(m.commitQueue))
	require.Equal(t, 2, n, "read at each collection")
}

func TestNewRegistersRuntimeCollectors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	New(reg)
	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["go_goroutines"], "Go collector")
	if runtime.GOOS == "linux" {
		require.True(t, names["process_cpu_seconds_total"], "process collector")
	}
	// A second Metrics on the same registry is a programmer error.
	require.Panics(t, func() { New(reg) })
	// Each registry is independent: many servers run in one test process.
	require.NotPanics(t, func() { New(prometheus.NewRegistry()) })
}

func TestNilMetricsIsANoOp(t *testing.T) {
	t.Parallel()
	var m *Metrics
	require.NotPanics(t, func() {
		m.EventReceived("orders", OutcomeAccepted)
		m.DeliveryDelay("orders", time.Second)
		m.RunsCreated("deliver", 1)
		m.RunTransition("deliver", store.RunSucceeded, time.Second)
		m.StepAttempt("deliver", "post", "crm", store.AttemptSucceeded)
		m.StepDuration("crm", time.Second)
		m.WatchCommitQueue("engine", func() int { return 0 })
	})
	s := NewSampler(nil, &fakeStats{}, []string{"f"}, time.Second, nil)
	require.NoError(t, s.Sample(t.Context()))
}
