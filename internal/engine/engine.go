// Package engine accepts inbound events: it matches them to flows, and stores
// each event with its runs in one group-committed transaction, deduplicated
// by the source's idempotency key. Accept returns only once the event is
// durable, which is what lets ingest answer 2xx.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/batch"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
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
	// CommitTimeout bounds each group commit. Default store.CommitTimeout.
	CommitTimeout time.Duration
	// Metrics counts the runs each commit creates. Optional.
	Metrics *metrics.Metrics
	// Fingerprints, when set, recognise echoes of our own writes and carry
	// the causal chain of writes to events (see lineage.go). Optional.
	Fingerprints Fingerprints
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
	e.committer = batch.New(e.commit, batch.Options{
		MaxBatch: MaxBatch, Queue: MaxQueued, Parallel: cfg.CommitParallel,
		Timeout: cmp.Or(cfg.CommitTimeout, store.CommitTimeout),
		// An event the database refuses fails alone, not every event that
		// shares its group commit (its sender would retry it into others).
		Split: store.IsRefused,
	})
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
	// Outcome is store.EventEcho for our own write coming back and
	// store.EventConflict for a mirror's change not written back.
	Outcome store.EventOutcome
}

// Accept stores ev and its runs durably, or finds it is a duplicate.
func (e *Engine) Accept(ctx context.Context, ev Event) (Accepted, error) {
	b, err := e.Build(ctx, ev)
	if err != nil {
		return Accepted{}, err
	}
	res, err := e.committer.Submit(ctx, b.Event)
	if err != nil {
		return Accepted{}, err
	}
	a := Accepted{EventID: res.EventID, Duplicate: res.Duplicate}
	if !res.Duplicate {
		a.Runs, a.Outcome = len(b.Event.Runs), b.Event.Lineage.Outcome
		e.after(ctx, b)
	}
	return a, nil
}

// Built is an event ready to store, with its runs and lineage.
type Built struct {
	Event store.NewEvent
	// after is done once the event is stored as new (see verdict).
	after afterStore
}

// Build returns the store row of ev with the runs it starts, without
// storing it: a poll commits a page of events together with its cursor in
// its own transaction, then reports the ones stored with Stored.
func (e *Engine) Build(ctx context.Context, ev Event) (Built, error) {
	src, ok := e.cfg.Plan.Sources[ev.Source]
	if !ok {
		return Built{}, fmt.Errorf("%w %q", ErrUnknownSource, ev.Source)
	}
	now := e.cfg.NowFunc()
	ne := store.NewEvent{
		ID: store.NewID("evt_", now), Source: ev.Source, Key: ev.Key, ReceivedAt: now, Payload: ev.Payload,
		TraceParent: ev.TraceParent,
	}
	v, err := e.lineage(ctx, src, ev, now)
	if err != nil {
		return Built{}, err
	}
	lineage := v.lineage
	ne.Lineage = lineage
	var conflicted []*flow.Flow
	for _, f := range src.Flows {
		if lineage.Outcome == store.EventEcho {
			break // our own write coming back: nothing to do
		}
		if f.When != nil {
			v, err := f.When.Eval(ctx, ev.Value)
			if transform.CutOff(ctx, err) {
				// Cut off (the sender gone, shutdown, jq's time limit on a
				// starved CPU), not failed: the executor's evaluation would
				// succeed and run the flow whatever the condition says.
				// Nothing is stored; the sender, unanswered, sends again.
				return Built{}, fmt.Errorf("flow %s: when: %w", f.Name, cmp.Or(ctx.Err(), err))
			}
			if err != nil {
				// Keep the run: the executor re-evaluates the condition and
				// dead-letters it with this error, so nothing fails silently.
				e.cfg.Logger.Warn("flow condition failed; the run will be dead-lettered",
					"source", ev.Source, "flow", f.Name, "error", err)
			} else if v != true {
				continue
			}
		}
		if f.Conflict != nil {
			conflicted = append(conflicted, f)
			continue
		}
		ne.Runs = append(ne.Runs, store.NewRun{ID: store.NewID("run_", now), Flow: f.Name, StepID: f.Steps[0].ID})
	}
	if len(conflicted) > 0 {
		proposals := e.conflicts(ev, conflicted, now)
		if len(ne.Runs) == 0 && len(proposals) == 0 {
			ne.Lineage.Outcome = store.EventConflict
		}
		ne.Runs = append(ne.Runs, proposals...)
	}
	return Built{Event: ne, after: v.after}, nil
}

// Stored finishes events a commit made outside the group committer (a
// poll's page): it counts their runs and wakes the executor if there are
// any. Pass only the events that were new.
func (e *Engine) Stored(ctx context.Context, built []Built) {
	created := false
	for _, b := range built {
		for _, run := range b.Event.Runs {
			e.cfg.Metrics.RunsCreated(run.Flow, 1)
			created = true
		}
		e.after(ctx, b)
	}
	if created {
		e.cfg.Notify()
	}
}

// after does what follows storing a new event: record the first echo of
// a write, forget the fingerprints of a record changed elsewhere, log an
// echo.
func (e *Engine) after(ctx context.Context, b Built) {
	ev := b.Event
	if m := b.after.mark; m != nil {
		// Best effort: unmarked, the next echo of the write is taken for
		// the first one (and marks it).
		if err := e.cfg.Fingerprints.MarkEcho(ctx, *m); err != nil {
			e.cfg.Logger.Warn("record the first echo of a write", "source", ev.Source, "error", err)
		}
	}
	if f := b.after.forget; f != nil {
		// Best effort: a fingerprint left behind only lives out its
		// window, and a retry of this call is harmless.
		if _, err := e.cfg.Fingerprints.ForgetFingerprints(ctx, *f); err != nil {
			e.cfg.Logger.Warn("forget fingerprints of a record changed elsewhere", "source", ev.Source, "error", err)
		}
	}
	if ev.Lineage.Outcome == store.EventEcho {
		e.cfg.Logger.Info("echo of our own write: no runs", "source", ev.Source, "event_id", ev.ID,
			"hop", ev.Lineage.Hop, "chain", ev.Lineage.Chain)
	}
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
