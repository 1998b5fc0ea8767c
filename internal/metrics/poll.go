package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one polled record, the result label of
// switchboard_poll_records_total.
const (
	// PollEmitted: a new record or a new version, stored as an event.
	PollEmitted = "emitted"
	// PollUnchanged: a version seen before; nothing stored.
	PollUnchanged = "unchanged"
	// PollKnown: its event was already stored (a backstopped webhook
	// delivered it).
	PollKnown = "known"
)

// pollMetrics are the collectors of timed sources.
type pollMetrics struct {
	runs          *prometheus.CounterVec
	records       *prometheus.CounterVec
	backstopFound *prometheus.CounterVec
	lastSuccess   *prometheus.GaugeVec
	cursorMoved   *prometheus.GaugeVec
}

func newPollMetrics() *pollMetrics {
	return &pollMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_poll_runs_total",
			Help: "Runs of timed sources (poll, schedule), by source and outcome (ok, error, paused: skipped because an operator paused its system).",
		}, []string{"source", "outcome"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_poll_records_total",
			Help: "Records read by polls, by source and result (emitted, unchanged, known).",
		}, []string{"source", "result"}),
		backstopFound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_backstop_found_total",
			Help: "Records a backstop poll found that the webhook source had not delivered (lost webhooks), by webhook source.",
		}, []string{"source"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_poll_last_success_timestamp_seconds",
			Help: "Unix time the last successful run of a timed source finished, by source.",
		}, []string{"source"}),
		cursorMoved: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_poll_cursor_moved_timestamp_seconds",
			Help: "Unix time a poll source's cursor last advanced, by source.",
		}, []string{"source"}),
	}
}

func (p *pollMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.runs, p.records, p.backstopFound, p.lastSuccess, p.cursorMoved}
}

// Outcomes of one run of a timed source, the outcome label of
// switchboard_poll_runs_total.
const (
	// PollRunOK: the run succeeded.
	PollRunOK = "ok"
	// PollRunError: the run failed (counted in the source's failures).
	PollRunError = "error"
	// PollRunPaused: the run was skipped because an operator paused a
	// system it reads; it is neither a success nor a failure.
	PollRunPaused = "paused"
)

// PollRun counts one run of a timed source with its outcome (PollRunOK,
// PollRunError, PollRunPaused); a success also sets the last success time.
func (m *Metrics) PollRun(source, outcome string, finished time.Time) {
	if m == nil {
		return
	}
	m.poll.runs.WithLabelValues(source, outcome).Inc()
	if outcome == PollRunOK {
		m.poll.lastSuccess.WithLabelValues(source).Set(float64(finished.UnixMilli()) / 1e3)
	}
}

// PollRecords counts n records of a poll source with one result.
func (m *Metrics) PollRecords(source, result string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.poll.records.WithLabelValues(source, result).Add(float64(n))
}

// BackstopFound counts records a backstop poll found that webhook source
// had not delivered.
func (m *Metrics) BackstopFound(source string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.poll.backstopFound.WithLabelValues(source).Add(float64(n))
}

// CursorMoved sets when a poll source's cursor last advanced.
func (m *Metrics) CursorMoved(source string, at time.Time) {
	if m == nil || at.IsZero() {
		return
	}
	m.poll.cursorMoved.WithLabelValues(source).Set(float64(at.UnixMilli()) / 1e3)
}
