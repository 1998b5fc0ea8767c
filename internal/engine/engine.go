// Package engine accepts inbound events: it matches them to flows, and stores
// each event with its runs in one group-committed transaction, deduplicated
// by the source's idempotency key. Accept returns only once the event is
// durable, which is what lets ingest answer 2xx.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/batch"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// Limits of the group committer.
const (
	// MaxBatch is the most events one transaction holds.
	MaxBatch = 256
	// MaxQueued is how many events may wait for a commit before Accept
	// answers ErrOverloaded.
	MaxQueued = 8192
)

// ErrOverloaded means the commit queue is full; retry later.
var ErrOverloaded = batch.ErrOverloaded

// ErrUnknownSource means the plan has no such source.
var ErrUnknownSource = errors.New("unknown source")

// Inserter is the store method the engine needs.
type Inserter interface {
	InsertEvents(ctx context.Context, events []store.NewEvent) ([]store.InsertResult, error)
}

// Config configures an Engine.
type Config struct {
	Store Inserter
	Plan  *flow.Plan
	// Notify is called after each commit that created runs, to wake the
	// executor. Optional.
	Notify func()
	// NowFunc returns the time. Defaults to time.Now.
	NowFunc func() time.Time
	Logger  *slog.Logger
	// CommitParallel is how many group commits may run at once: 1 (the
	// default) for SQLite's single writer, a few for PostgreSQL.
	CommitParallel int
	// Metrics counts the runs each commit creates. Optional.
	Metrics *metrics.Metrics
}

// Engine accepts events. Call Run to start its committer.
type Engine struct {
	cfg       Config
	committer *batch.Committer[store.NewEvent, store.InsertResult]
}

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	e := &Engine{cfg: cfg}
	e.committer = batch.New(e.commit, MaxBatch, MaxQueued, cfg.CommitParallel)
	return e
}

// Run runs the group committer until ctx ends, then commits what is queued.
func (e *Engine) Run(ctx context.Context) error { return e.committer.Run(ctx) }

// Event is an inbound event.
type Event struct {
	Source string
	// Key is the idempotency key, unique per source.
	Key string
	// Payload is the body as JSON; Value is the same, decoded.
	Payload []byte
	Value   any
	// TraceParent is the W3C traceparent of the span that received the
	// event ("" when tracing is off), stored so its runs join the trace.
	TraceParent string
}

// Accepted is the outcome of Accept.
type Accepted struct {
	EventID   string
	Duplicate bool
	// Runs is how many runs the event started (0 for a duplicate).
	Runs int
}

// Accept stores ev and its runs durably, or finds it is a duplicate.
func (e *Engine) Accept(ctx context.Context, ev Event) (Accepted, error) {
	src, ok := e.cfg.Plan.Sources[ev.Source]
	if !ok {
		return Accepted{}, fmt.Errorf("%w %q", ErrUnknownSource, ev.Source)
	}
	now := e.cfg.NowFunc()
	ne := store.NewEvent{
		ID: store.NewID("evt_", now), Source: ev.Source, Key: ev.Key, ReceivedAt: now, Payload: ev.Payload,
		TraceParent: ev.TraceParent,
	}
	for _, f := range src.Flows {
		if f.When != nil {
			v, err := f.When.Eval(ctx, ev.Value)
			if err != nil {
				// Keep the run: the executor re-evaluates the condition and
				// dead-letters it with this error, so nothing fails silently.
				e.cfg.Logger.Warn("flow condition failed; the run will be dead-lettered",
					"source", ev.Source, "flow", f.Name, "error", err)
			} else if v != true {
				continue
			}
		}
		ne.Runs = append(ne.Runs, store.NewRun{ID: store.NewID("run_", now), Flow: f.Name, StepID: f.Steps[0].ID})
	}
	res, err := e.committer.Submit(ctx, ne)
	if err != nil {
		return Accepted{}, err
	}
	a := Accepted{EventID: res.EventID, Duplicate: res.Duplicate}
	if !res.Duplicate {
		a.Runs = len(ne.Runs)
	}
	return a, nil
}

func (e *Engine) commit(ctx context.Context, events []store.NewEvent) ([]store.InsertResult, error) {
	res, err := e.cfg.Store.InsertEvents(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("store %d events: %w", len(events), err)
	}
	// Counted here, after the commit, rather than in Accept: a submitter
	// whose context ended may never see a result its event still got.
	created := false
	for i, r := range res {
		if r.Duplicate {
			continue
		}
		for _, run := range events[i].Runs {
			e.cfg.Metrics.RunsCreated(run.Flow, 1)
			created = true
		}
	}
	if created { // a batch of duplicates gives the executor nothing to do
		e.cfg.Notify()
	}
	return res, nil
}

// Pending returns how many events wait for a commit.
func (e *Engine) Pending() int { return e.committer.Pending() }
