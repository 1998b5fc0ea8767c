package poll

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// LeaseName is the store lease a node holds while it runs source.
func LeaseName(source string) string { return "poll:" + source }

// Run runs every timed source of the plan until ctx ends. Every node runs
// it; a source's lease makes one node at a time run each source.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range slices.Sorted(maps.Keys(p.cfg.Plan.Sources)) {
		src := p.cfg.Plan.Sources[name]
		if src.Timed() == nil {
			continue
		}
		wg.Go(func() { p.loop(ctx, src) })
	}
	wg.Wait()
	return nil
}

// loop runs src whenever it is due, until ctx ends.
func (p *Poller) loop(ctx context.Context, src *flow.Source) {
	log := p.cfg.Logger.With("source", src.Name)
	for ctx.Err() == nil {
		wait, err := p.step(ctx, src)
		if err != nil && ctx.Err() == nil {
			log.Error("timed source: store error", "error", err)
			wait = p.cfg.Recheck
		}
		t := time.NewTimer(min(wait, p.cfg.Recheck))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// step runs src once if it is due and this node gets its lease. It
// returns how long to wait before looking again.
func (p *Poller) step(ctx context.Context, src *flow.Source) (time.Duration, error) {
	sched := src.Timed()
	now := p.cfg.NowFunc()
	st, ok, err := p.cfg.Store.GetPollState(ctx, src.Name)
	if err != nil {
		return 0, err
	}
	if !ok {
		// A poll runs at once on its first start; a schedule waits for
		// its first tick.
		first := now
		if src.Poll == nil {
			first = sched.Next(now)
		}
		return 0, p.cfg.Store.InitPollState(ctx, src.Name, first)
	}
	due := p.due(src, st, now)
	if due.Before(st.NextRunAt) {
		p.cfg.Logger.Warn("timed source: its next run is further away than its schedule allows (was the clock set back?); running it now",
			"source", src.Name, "next_run_at", st.NextRunAt, "now", now)
	}
	if wait := due.Sub(now); wait > 0 {
		p.cfg.Metrics.CursorMoved(src.Name, st.CursorMovedAt)
		return wait, nil
	}
	lease := LeaseName(src.Name)
	held, err := p.cfg.Store.AcquireLease(ctx, store.LeaseParams{Name: lease, Holder: p.cfg.Node, Now: now, Until: now.Add(p.cfg.Lease)})
	if err != nil || !held {
		return p.cfg.Lease / 3, err
	}
	defer func() { _ = p.cfg.Store.ReleaseLease(context.WithoutCancel(ctx), lease, p.cfg.Node) }()
	// Another node may have run it between the read and the lease.
	if st, _, err = p.cfg.Store.GetPollState(ctx, src.Name); err != nil || p.due(src, st, now).After(now) {
		return 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	var lost atomic.Bool
	go func() {
		defer close(renewed)
		lost.Store(!p.renew(runCtx, cancel, lease))
	}()
	started := p.cfg.NowFunc()
	stats, runErr := p.runSource(runCtx, src, st)
	cancel()
	<-renewed
	if ctx.Err() != nil {
		// Shutting down: the run was cut off, not failed. The cursor is
		// after its last committed page; the next start continues.
		return 0, nil
	}
	if lost.Load() {
		// Another node may hold the source now: its state is no longer
		// this node's to write.
		return 0, nil
	}
	finished := p.cfg.NowFunc()
	next := sched.Next(started)
	if next.Before(finished) {
		next = finished // behind schedule: run again at once
	}
	run := store.PollRun{Source: src.Name, Now: finished, NextRunAt: next}
	if src.Poll != nil && src.Poll.Backstop() {
		run.Found = stats.Emitted
	}
	outcome := metrics.PollRunOK
	switch paused, skipped := errors.AsType[*pausedError](runErr); {
	case skipped:
		// Skipped, not failed: failures, last error and last success stay
		// as they were, and the next run is at the schedule.
		outcome = metrics.PollRunPaused
		run.Skipped = true
		p.cfg.Logger.Warn("poll skipped: "+paused.Error(), "source", src.Name, "system", paused.system, "next_run_at", next)
	case errors.As(runErr, new(configError)):
		outcome = metrics.PollRunError
		run.Error = runErr.Error()
		p.cfg.Logger.Error("timed source run failed; fix the config, it is not retried before its next run", "source", src.Name, "next_run_at", next, "error", runErr)
	case runErr != nil:
		outcome = metrics.PollRunError
		run.Error = runErr.Error()
		retry := min(p.cfg.RetryBase*30<<min(st.Failures, 10), retryCap)
		run.NextRunAt = minTime(next, finished.Add(retry))
		p.cfg.Logger.Error("timed source run failed", "source", src.Name, "failures", st.Failures+1, "retry_at", run.NextRunAt, "error", runErr)
	case stats.More:
		run.NextRunAt = finished // pages left: continue at once
	}
	p.cfg.Metrics.PollRun(src.Name, outcome, finished)
	return 0, p.cfg.Store.FinishPoll(context.WithoutCancel(ctx), run)
}

// due is when src runs next: its stored next run time, unless that is
// further away than src's schedule allows from now by more than a lease.
// Every run stores a next time of at most its schedule's next from when
// it started, so a time beyond that was written under a clock that has
// since been set back (an NTP step, a host that booted hours ahead), or
// under a longer interval since shortened: waiting for it would stop the
// source for as long as the clock moved. Such a poll runs now and is
// scheduled from then. (The lease's margin leaves nodes' clock skew alone.)
//
// Only polls: a tick's or a reconciliation's run is named by its stored
// time, and running it early would give a later tick the same name (a
// duplicate, dropped).
func (p *Poller) due(src *flow.Source, st store.PollState, now time.Time) time.Time {
	if src.Poll != nil && st.NextRunAt.After(src.Timed().Next(now).Add(p.cfg.Lease)) {
		return now
	}
	return st.NextRunAt
}

// runSource runs one poll, reconciliation or tick.
func (p *Poller) runSource(ctx context.Context, src *flow.Source, st store.PollState) (Stats, error) {
	if src.Reconcile != nil {
		return Stats{}, p.runReconcile(ctx, src, st)
	}
	if src.Poll == nil {
		scheduled, err := p.runName(ctx, src, st)
		if err != nil {
			return Stats{}, err
		}
		at, _ := time.Parse(time.RFC3339Nano, scheduled)
		acc, err := p.Tick(ctx, src, at)
		if err == nil {
			p.cfg.Logger.Info("schedule fired", "source", src.Name, "scheduled_at", at, "event_id", acc.EventID, "duplicate", acc.Duplicate, "runs", acc.Runs)
		}
		return Stats{}, err
	}
	started := p.cfg.NowFunc()
	stats, err := p.Poll(ctx, src, Options{})
	attrs := []any{"source", src.Name, "pages", stats.Pages, "records", stats.Records, "emitted", stats.Emitted,
		"unchanged", stats.Unchanged, "known", stats.Known, "cursor", stats.Cursor, "more", stats.More,
		"duration", p.cfg.NowFunc().Sub(started).Round(time.Millisecond)}
	switch {
	case err == nil:
		p.cfg.Logger.Info("poll finished", attrs...)
	case isPaused(err):
		// step logs the skip
	default:
		p.cfg.Logger.Error("poll stopped", append(attrs, "error", err)...)
	}
	return stats, err
}

// runName names the run of a tick or reconciliation by its scheduled time.
// The name is stored as the source's cursor before the run starts, and a
// retry after a failure reuses it, whatever time the retry runs at: a run
// that failed after storing some of its events then emits none of them
// twice, and a tick keeps its scheduled time.
//
// Only a name stored after the last success is the failed run's: when
// storing the name was what failed, the cursor still holds the previous
// successful run's, and reusing it would emit that tick again (a duplicate,
// dropped) instead of this one. The retry is then named by its own time.
func (p *Poller) runName(ctx context.Context, src *flow.Source, st store.PollState) (string, error) {
	if st.Failures > 0 && st.HasCursor && st.CursorMovedAt.After(st.LastOKAt) {
		return st.Cursor, nil
	}
	name := st.NextRunAt.UTC().Format(time.RFC3339Nano)
	_, err := p.cfg.Store.CommitPollPage(ctx, store.PollPage{Source: src.Name, Now: p.cfg.NowFunc(), Cursor: name, SetCursor: true})
	return name, err
}

// renew keeps lease while a run goes on; it cancels the run the moment a
// renewal fails, so a run never outlives its lease. It reports whether the
// lease was held until the run ended.
func (p *Poller) renew(ctx context.Context, cancel context.CancelFunc, lease string) bool {
	t := time.NewTicker(p.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case <-t.C:
		}
		now := p.cfg.NowFunc()
		tryCtx, stop := context.WithTimeout(ctx, p.cfg.Lease/3)
		held, err := p.cfg.Store.AcquireLease(tryCtx, store.LeaseParams{Name: lease, Holder: p.cfg.Node, Now: now, Until: now.Add(p.cfg.Lease)})
		stop()
		if (err != nil || !held) && ctx.Err() == nil {
			p.cfg.Logger.Error("timed source lease lost; stopping the run", "lease", lease, "error", err)
			cancel()
			return false
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
