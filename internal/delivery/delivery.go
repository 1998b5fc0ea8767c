// Package delivery is the executor: workers claim runnable runs with an
// expiring lease, execute their flow's steps in order through the
// connectors, checkpoint each step's output, schedule retries in the store
// with backoff, and dead-letter what cannot succeed.
package delivery

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/batch"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

// Store is what the executor needs from the store.
type Store interface {
	FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error)
	ExtendLeases(ctx context.Context, p store.ExtendParams) error
	NextDue(ctx context.Context) (time.Time, bool, error)
	PauseSystem(ctx context.Context, p store.PauseParams) (bool, error)
	ResumeCredentialPause(ctx context.Context, system string) (bool, error)
	PauseStore // the executor's own PauseSync reads it
	WakeHeld(ctx context.Context, system string, now time.Time) (int, error)
	SaveFingerprint(ctx context.Context, f store.Fingerprint) error
	// GetRun reads a run: after a commit of its result failed, whether
	// the database had applied it anyway (see submit).
	GetRun(ctx context.Context, id string) (store.Run, error)
	// ListAttempts reads a run's attempts: for a run claimed past its
	// attempt limit, which of them were lost (see overLimit).
	ListAttempts(ctx context.Context, runID string) ([]store.Attempt, error)
}

// Notifier is told about every run that dies, at once. Implementations must
// not block for long: they run on the worker that finished the run.
type Notifier interface {
	RunDead(ctx context.Context, d DeadRun)
}

// SystemNotifier, when the Notifier also implements it, is told when a
// system is paused because it refused our credentials, and when a probe
// resumes it.
type SystemNotifier interface {
	SystemPaused(system, reason string)
	SystemResumed(system string)
}

// DeadRun describes a dead-lettered run for notifiers.
type DeadRun struct {
	RunID    string
	EventID  string
	Source   string
	Flow     string
	Step     string
	System   string
	Attempts int
	Error    string
}

// Report describes one finished attempt, for observers such as the demo.
type Report struct {
	RunID   string
	EventID string
	Source  string
	Flow    string
	Step    string
	System  string
	Attempt int
	Outcome store.AttemptOutcome
	Status  int
	Err     error
	// Wait is the delay before the next attempt (retry outcomes).
	Wait time.Duration
	// Done reports whether the run finished (succeeded or dead).
	Done bool
	// Lag is the time from the run's creation to now, set when Done.
	Lag time.Duration
}

// Config configures an Executor.
type Config struct {
	Store Store
	Plan  *flow.Plan
	// Workers is how many runs execute at once.
	Workers int
	// Lease is how long a claim lasts without renewal.
	Lease time.Duration
	// PollInterval is the longest an idle executor waits before looking for
	// due runs when nothing wakes it. It sleeps until the next run is due
	// (a retry, a lease expiry) when that is sooner, and Notify wakes it
	// when new runs are committed, so this is only the fallback for runs
	// created by another process without a notification. Default 1s.
	PollInterval time.Duration
	// Notifier is told about dead runs. Optional.
	Notifier Notifier
	// Observe, if set, is called after every attempt.
	Observe func(Report)
	Logger  *slog.Logger
	NowFunc func() time.Time
	// RandN draws uniformly from [0, n) for backoff jitter.
	RandN func(int64) int64
	// CommitParallel is how many batches of results may commit at once: 1
	// (the default) for SQLite's single writer, a few for PostgreSQL.
	CommitParallel int
	// CommitTimeout bounds each commit of results and claims, and the
	// claim loop's look at the queue. Default store.CommitTimeout.
	CommitTimeout time.Duration
	// Grace bounds how long Run waits, after its context ends, for steps in
	// flight; then their calls are cancelled (and retried later). Default 10s.
	Grace time.Duration
	// Metrics counts attempts and run transitions and times calls and
	// runs. Optional.
	Metrics *metrics.Metrics
	// Tracer makes a span per execution of a run and per step attempt;
	// connectors' calls carry the attempt's traceparent. Optional: nil is
	// tracing off.
	Tracer *tracing.Tracer
	// Gates guard each system's limits; shared with the poller so polls
	// and steps draw on one budget per system. Default: NewGates.
	Gates map[string]*limit.Gate
}

// NewGates returns a gate for each of plan's systems.
func NewGates(plan *flow.Plan, nowFunc func() time.Time) map[string]*limit.Gate {
	gates := make(map[string]*limit.Gate, len(plan.Systems))
	for name, sys := range plan.Systems {
		gates[name] = limit.New(name, sys.Limits, nowFunc)
	}
	return gates
}

// Executor runs flows. Create with New; call Run.
type Executor struct {
	cfg  Config
	wake chan struct{}
	// cycles commits attempt results and claims together (see cycle). An
	// item's result is its own fate: nil or ErrLeaseLost (nil for a claim,
	// whose runs travel in its ticket).
	cycles *batch.Committer[cycle, error]
	// gates guard each system's rate, concurrency and circuit; built once.
	gates map[string]*limit.Gate
	// pauses applies the store's paused systems to gates.
	pauses   *PauseSync
	node     string
	stopping atomic.Bool // set when Run's context ends: runs stop after their current step

	mu       sync.Mutex        // guards the fields below
	inflight map[string]string // run ID -> lease token
}

// New returns an Executor.
func New(cfg Config) *Executor {
	if cfg.Workers <= 0 {
		cfg.Workers = flow.DefaultWorkers
	}
	if cfg.Lease <= 0 {
		cfg.Lease = flow.DefaultLease
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.RandN == nil {
		cfg.RandN = defaultRandN
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	cfg.CommitTimeout = cmp.Or(cfg.CommitTimeout, store.CommitTimeout)
	if cfg.Gates == nil {
		cfg.Gates = NewGates(cfg.Plan, cfg.NowFunc)
	}
	x := &Executor{cfg: cfg, wake: make(chan struct{}, 1), inflight: map[string]string{}, gates: cfg.Gates}
	x.pauses = &PauseSync{Store: cfg.Store, Gates: x.gates, Logger: cfg.Logger, WakeFunc: x.wakeHeld}
	var b [6]byte
	_, _ = rand.Read(b[:])
	x.node = hex.EncodeToString(b[:])
	x.cycles = batch.New(x.commit, batch.Options{
		MaxBatch: 256, Queue: 4 * cfg.Workers, Parallel: cfg.CommitParallel,
		Timeout: cfg.CommitTimeout,
		// A result the database refuses fails alone, not the results and
		// the claim that share its commit (it would be retried into others).
		Split: store.IsRefused,
	})
	return x
}

// Pending returns how many attempt results wait for a commit.
func (x *Executor) Pending() int { return x.cycles.Pending() }

// Notify wakes an idle executor: new runs were committed.
func (x *Executor) Notify() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// IdempotencyKey is the key sent with every outbound write of a step: the
// same for every retry of the step, different for another event, flow, step
// or replay generation.
func IdempotencyKey(source, eventKey, flowName, stepID string, generation int) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", source, eventKey, flowName, stepID)
	if generation > 0 {
		fmt.Fprintf(h, "\x00%d", generation)
	}
	return "sb_" + hex.EncodeToString(h.Sum(nil))[:40]
}
