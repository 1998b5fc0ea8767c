// Package metrics declares every Prometheus collector Switchboard exports,
// once, and registers them on a registry the caller passes in. Label values
// are names from the config (sources, flows, steps, systems) or fixed
// outcomes, never IDs or URLs, so a series count stays bounded.
package metrics

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Outcomes of an inbound webhook, the outcome label of
// switchboard_events_received_total. Each answer counts exactly one.
const (
	// OutcomeAccepted: a new event was stored (202).
	OutcomeAccepted = "accepted"
	// OutcomeDuplicate: the idempotency key was seen before (200).
	OutcomeDuplicate = "duplicate"
	// OutcomeEcho: a new event was stored, but it was our own write coming
	// back, so it started no runs (202).
	OutcomeEcho = "echo"
	// OutcomeRejectedSignature: the signature was missing, wrong or expired (401).
	OutcomeRejectedSignature = "rejected_signature"
	// OutcomeRejectedBody: the body was unreadable, malformed, or had no
	// usable idempotency key (400).
	OutcomeRejectedBody = "rejected_body"
	// OutcomeRejectedSize: the body exceeded the source's limit (413).
	OutcomeRejectedSize = "rejected_size"
	// OutcomeRejectedContentType: the content type was not the source's (415).
	OutcomeRejectedContentType = "rejected_content_type"
	// OutcomeUnknownSource: no webhook source has that name (404).
	OutcomeUnknownSource = "unknown_source"
	// OutcomeUnavailable: the event was not stored: store failure,
	// overload or shutdown (503).
	OutcomeUnavailable = "unavailable"
)

// UnknownSource is the source label of requests to a path that names no
// webhook source: a scanner must not be able to create series.
const UnknownSource = "unknown"

// Run states counted by switchboard_runs_total, besides the terminal and
// retry states of store.RunState.
const (
	// RunCreated: the engine committed a new run.
	RunCreated = "created"
)

// Bucket layouts, in seconds.
var (
	// lagBuckets span a run done in milliseconds to one done hours late.
	lagBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// callBuckets span a fast API call to a slow one near a client timeout.
	callBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// delayBuckets span a direct delivery to one near a signature
	// scheme's timestamp tolerance (5 minutes is common).
	delayBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// Metrics holds every collector. A nil *Metrics is valid: every method is
// then a no-op, so components built without metrics (tests) need no
// special case. Safe for concurrent use.
type Metrics struct {
	eventsReceived *prometheus.CounterVec
	runs           *prometheus.CounterVec
	stepAttempts   *prometheus.CounterVec
	queueDepth     *prometheus.GaugeVec
	oldestPending  *prometheus.GaugeVec
	deadRuns       *prometheus.GaugeVec
	lag            *prometheus.HistogramVec
	stepDuration   *prometheus.HistogramVec
	deliveryDelay  *prometheus.HistogramVec
	commitQueue    *commitQueues
	poll           *pollMetrics
	reconcile      *reconcileMetrics
}

// New creates every collector and registers them on reg, with the Go
// runtime and process collectors. It panics if reg already holds one of
// them (a programmer error: one registry per Metrics).
func New(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_events_received_total",
			Help: "Webhook requests answered, by source and outcome (accepted, duplicate, rejected_*, unknown_source, unavailable).",
		}, []string{"source", "outcome"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_runs_total",
			Help: "Run transitions committed, by flow and state: created, retrying, succeeded, dead.",
		}, []string{"flow", "state"}),
		stepAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_step_attempts_total",
			Help: "Step attempts recorded, by flow, step, system and outcome (succeeded, retry, dead).",
		}, []string{"flow", "step", "system", "outcome"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_queue_depth",
			Help: "Runs waiting to execute (pending or retrying), by flow.",
		}, []string{"flow"}),
		oldestPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_oldest_pending_seconds",
			Help: "Age of the oldest waiting run, by flow; 0 when none waits.",
		}, []string{"flow"}),
		deadRuns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_dead_runs",
			Help: "Runs in the dead-letter state, by flow.",
		}, []string{"flow"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_lag_seconds",
			Help:    "Time from a run's creation (its event's receipt) until it succeeded or died, by flow.",
			Buckets: lagBuckets,
		}, []string{"flow"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_step_duration_seconds",
			Help:    "Duration of each step's call to its system, by system.",
			Buckets: callBuckets,
		}, []string{"system"}),
		deliveryDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_delay_seconds",
			Help:    "Receipt time minus the sender's signed timestamp, for schemes that sign one, by source.",
			Buckets: delayBuckets,
		}, []string{"source"}),
		commitQueue: &commitQueues{
			desc: prometheus.NewDesc("switchboard_commit_queue",
				"Items waiting for a group commit, by queue (engine: inbound events, finisher: attempt results).",
				[]string{"queue"}, nil),
			pending: map[string]func() int{},
		},
		poll: newPollMetrics(),
	}
	reg.MustRegister(
		m.eventsReceived, m.runs, m.stepAttempts,
		m.queueDepth, m.oldestPending, m.deadRuns,
		m.lag, m.stepDuration, m.deliveryDelay, m.commitQueue,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(m.poll.collectors()...)
	m.reconcile = newReconcileMetrics(reg)
	return m
}

// EventReceived counts one answered webhook. source must be a configured
// source name or UnknownSource; outcome one of the Outcome constants.
func (m *Metrics) EventReceived(source, outcome string) {
	if m == nil {
		return
	}
	m.eventsReceived.WithLabelValues(source, outcome).Inc()
}

// DeliveryDelay records how long after the sender signed a webhook it
// arrived. Clock skew can make it negative; it is recorded as 0.
func (m *Metrics) DeliveryDelay(source string, d time.Duration) {
	if m == nil {
		return
	}
	m.deliveryDelay.WithLabelValues(source).Observe(max(d, 0).Seconds())
}

// RunsCreated counts n new runs of flow.
func (m *Metrics) RunsCreated(flow string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.runs.WithLabelValues(flow, RunCreated).Add(float64(n))
}

// RunTransition counts a committed move of a run of flow to state (retrying,
// succeeded or dead). For the terminal states it also records the lag: the
// time from the run's creation to done.
func (m *Metrics) RunTransition(flow string, state store.RunState, lag time.Duration) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(flow, string(state)).Inc()
	if state == store.RunSucceeded || state == store.RunDead {
		m.lag.WithLabelValues(flow).Observe(max(lag, 0).Seconds())
	}
}

// StepAttempt counts one recorded attempt of step of flow against system.
// system is "" when the run died before a system was called (for example
// its flow left the config).
func (m *Metrics) StepAttempt(flow, step, system string, outcome store.AttemptOutcome) {
	if m == nil {
		return
	}
	m.stepAttempts.WithLabelValues(flow, step, system, string(outcome)).Inc()
}

// StepDuration records the duration of one call to system.
func (m *Metrics) StepDuration(system string, d time.Duration) {
	if m == nil {
		return
	}
	m.stepDuration.WithLabelValues(system).Observe(max(d, 0).Seconds())
}

// WatchCommitQueue exports pending(), read at each scrape, as
// switchboard_commit_queue{queue=name}. pending must be cheap and safe for
// concurrent use. A later call with the same name replaces the earlier.
func (m *Metrics) WatchCommitQueue(name string, pending func() int) {
	if m == nil {
		return
	}
	m.commitQueue.mu.Lock()
	defer m.commitQueue.mu.Unlock()
	m.commitQueue.pending[name] = pending
}

// setQueue sets the three sampled gauges of flow.
func (m *Metrics) setQueue(flow string, waiting, dead int, oldest time.Duration) {
	m.queueDepth.WithLabelValues(flow).Set(float64(waiting))
	m.deadRuns.WithLabelValues(flow).Set(float64(dead))
	m.oldestPending.WithLabelValues(flow).Set(max(oldest, 0).Seconds())
}

// commitQueues is a collector reading the group committers' queue lengths
// at scrape time, so nothing has to poll them.
type commitQueues struct {
	desc *prometheus.Desc

	mu      sync.Mutex // guards the field below
	pending map[string]func() int
}

func (c *commitQueues) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *commitQueues) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	names := slices.Sorted(maps.Keys(c.pending))
	fns := make([]func() int, len(names))
	for i, n := range names {
		fns[i] = c.pending[n]
	}
	c.mu.Unlock()
	for i, n := range names {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(fns[i]()), n)
	}
}

var _ prometheus.Collector = (*commitQueues)(nil)
