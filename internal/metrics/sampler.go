package metrics

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// DefaultSampleEvery is how often a Sampler reads the queue by default.
const DefaultSampleEvery = 5 * time.Second

// StatsReader is the store method a Sampler needs.
type StatsReader interface {
	QueueStats(ctx context.Context) ([]store.FlowStats, error)
}

// Sampler sets the queue gauges (switchboard_queue_depth,
// switchboard_oldest_pending_seconds, switchboard_dead_runs) from the
// store at a fixed interval. It reads the shared store, so every node may
// run one and they all export the same values. Create with NewSampler.
type Sampler struct {
	// Logger receives sampling errors; nil discards them. Set it before Run.
	Logger *slog.Logger

	m       *Metrics
	st      StatsReader
	flows   []string
	every   time.Duration
	nowFunc func() time.Time
}

// NewSampler returns a Sampler setting m's gauges for each flow in flows
// (the configured flow names) from st every interval (DefaultSampleEvery
// when every <= 0). nowFunc defaults to time.Now.
func NewSampler(m *Metrics, st StatsReader, flows []string, every time.Duration, nowFunc func() time.Time) *Sampler {
	if every <= 0 {
		every = DefaultSampleEvery
	}
	if nowFunc == nil {
		nowFunc = time.Now
	}
	return &Sampler{Logger: slog.New(slog.DiscardHandler), m: m, st: st, flows: slices.Clone(flows), every: every, nowFunc: nowFunc}
}

// maxDuty bounds the share of the time the sampler spends reading: the
// read's cost grows with the backlog (it counts every queued run), and a
// backlog is when the store can least spare it: on SQLite a long read also
// holds back the checkpoint, so the WAL grows.
const maxDuty = 10

// Run samples at once, then every interval, until ctx ends; a read that
// takes longer than a tenth of the interval stretches the interval to ten
// times the read. A failed read is logged and leaves the gauges at their
// last values (stale, not reset: a store outage must not read as an empty
// queue). It returns nil.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		if err := s.Sample(ctx); err != nil && ctx.Err() == nil && s.Logger != nil {
			s.Logger.Error("sample queue metrics", "error", err)
		}
		took := time.Since(start)
		t.Reset(max(s.every-took, (maxDuty-1)*took))
	}
}

// Sample reads the queue once and sets the gauges of every configured flow;
// a flow the store reports nothing for reads 0. Flows the store reports
// that are not configured (removed from the config) are left out, which
// keeps the label values those of the config.
func (s *Sampler) Sample(ctx context.Context) error {
	if s.m == nil {
		return nil
	}
	stats, err := s.st.QueueStats(ctx)
	if err != nil {
		return err
	}
	byFlow := make(map[string]store.FlowStats, len(stats))
	for _, fs := range stats {
		byFlow[fs.Flow] = fs
	}
	now := s.nowFunc()
	for _, f := range s.flows {
		fs := byFlow[f]
		var oldest time.Duration
		if fs.Waiting > 0 && !fs.OldestWaiting.IsZero() {
			oldest = now.Sub(fs.OldestWaiting)
		}
		s.m.setQueue(f, fs.Waiting, fs.Dead, oldest)
	}
	return nil
}
