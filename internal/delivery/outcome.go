package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// retry records a failed attempt and schedules the run's next one after the
// policy's back-off, or dead-letters the run once its attempts are spent.
func (x *Executor) retry(ctx context.Context, token string, c store.ClaimedRun, policy flow.RetryPolicy, run store.Run, a store.Attempt, cause error, now time.Time) {
	if run.Attempt >= policy.Attempts {
		x.dead(ctx, token, c, a, fmt.Errorf("gave up after %d attempts: %w", run.Attempt, cause))
		return
	}
	ra, hasRA := connector.RetryAfterOf(cause)
	wait := Backoff(policy, run.Attempt, ra, hasRA, x.cfg.RandN)
	a.Outcome = store.AttemptRetry
	x.finish(ctx, c, store.FinishParams{
		RunID: run.ID, Token: token, Now: now, Attempt: a,
		State: store.RunRetrying, Step: run.Step, StepID: a.StepID, RunAttempt: run.Attempt,
		DueAt: now.Add(wait), LastError: cause.Error(),
	}, wait, cause)
}

// evalFailed ends a run whose jq failed before the call of step, the step
// it is at (for the flow's when:, the first, and a names no system). Cut
// off by the end of the shutdown grace, the run is handed back untried. An
// error in the expression or the data would fail the same way again: the
// run is dead-lettered with it. An evaluation cut off by jq's time limit is
// a starved CPU, not the data: the run is retried like a failed call
// (step's back-off, dead-lettered once its attempts are spent).
func (x *Executor) evalFailed(ctx context.Context, token string, c store.ClaimedRun, step *flow.Step, run store.Run, a store.Attempt, cause error) {
	if x.interrupted(ctx, token, c, step, run) {
		return
	}
	if !transform.CutOff(ctx, cause) {
		x.dead(ctx, token, c, a, cause)
		return
	}
	x.retry(ctx, token, c, step.Retry, run, a, cause, x.cfg.NowFunc())
}

// dead records the final attempt, moves the run to dead and tells the
// notifier.
func (x *Executor) dead(ctx context.Context, token string, c store.ClaimedRun, a store.Attempt, cause error) {
	x.die(ctx, token, c, a, cause, "")
}

// die is dead that also deletes the fingerprint dropFingerprint (when not
// empty) in the same transaction.
func (x *Executor) die(ctx context.Context, token string, c store.ClaimedRun, a store.Attempt, cause error, dropFingerprint string) {
	now := x.cfg.NowFunc()
	a.Outcome = store.AttemptDead
	a.Error = cause.Error()
	p := store.FinishParams{
		RunID: c.Run.ID, Token: token, Now: now, Attempt: a,
		State: store.RunDead, Step: a.StepIndex, StepID: a.StepID, RunAttempt: a.Number, DueAt: now,
		LastError: cause.Error(), DropFingerprint: dropFingerprint,
	}
	if !x.finish(ctx, c, p, 0, cause) {
		return
	}
	if x.cfg.Notifier != nil {
		x.cfg.Notifier.RunDead(ctx, DeadRun{
			RunID: c.Run.ID, EventID: c.Event.ID, Source: c.Event.Source, Flow: c.Run.Flow,
			Step: a.StepID, System: a.System, Attempts: a.Number, Error: cause.Error(),
		})
	}
}

// finish commits one attempt (batched with other workers' attempts), logs
// it and reports it. It returns false if the run must stop here: the lease
// was lost (another worker owns the run now) or the store failed (the lease
// will expire and the step will be retried with the same idempotency key).
func (x *Executor) finish(ctx context.Context, c store.ClaimedRun, p store.FinishParams, wait time.Duration, cause error) bool {
	err := x.submit(ctx, p)
	a := p.Attempt
	x.traceAttempt(ctx, p, wait, cause, err)
	attrs := []any{
		"event_id", c.Event.ID, "source", c.Event.Source, "run_id", c.Run.ID, "flow", c.Run.Flow,
		"step", a.StepID, "system", a.System, "attempt", a.Number, "outcome", a.Outcome,
		"status", a.Status, "duration_ms", a.Duration.Milliseconds(),
	}
	if cause != nil {
		attrs = append(attrs, "error", cause.Error())
	}
	if a.Outcome == store.AttemptRetry {
		attrs = append(attrs, "retry_in_ms", wait.Milliseconds())
	}
	if err == nil || errors.Is(err, store.ErrLeaseLost) {
		// The store records the attempt even when the lease was lost; only
		// the run's transition is dropped.
		x.cfg.Metrics.StepAttempt(c.Run.Flow, a.StepID, a.System, a.Outcome)
	}
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		x.cfg.Logger.Warn("attempt result dropped: lease lost to another worker", attrs...)
		return false
	case store.IsRefused(err) && !errors.As(cause, new(refusedResult)):
		x.cfg.Logger.Error("attempt result refused by the database; dead-lettering the run", append(attrs, "store_error", err.Error())...)
		x.refused(ctx, c, p, err)
		return false
	case err != nil:
		x.cfg.Logger.Error("attempt result not stored; the run will be retried when its lease expires",
			append(attrs, "store_error", err.Error())...)
		return false
	case a.Outcome == store.AttemptDead:
		x.cfg.Logger.Error("run dead-lettered", attrs...)
	default:
		x.cfg.Logger.Info("attempt", attrs...)
	}
	switch p.State {
	case store.RunSucceeded, store.RunDead, store.RunRetrying:
		// Lag runs from the run's creation: the event's receipt for the
		// run the event started, the replay for a replayed run.
		x.cfg.Metrics.RunTransition(c.Run.Flow, p.State, p.Now.Sub(c.Run.CreatedAt))
	}
	if x.cfg.Observe != nil {
		r := Report{
			RunID: c.Run.ID, EventID: c.Event.ID, Source: c.Event.Source, Flow: c.Run.Flow,
			Step: a.StepID, System: a.System, Attempt: a.Number, Outcome: a.Outcome, Status: a.Status,
			Err: cause, Wait: wait, Done: p.State == store.RunSucceeded || p.State == store.RunDead,
		}
		if r.Done {
			r.Lag = p.Now.Sub(c.Run.CreatedAt)
		}
		x.cfg.Observe(r)
	}
	return true
}

// refusedResult is the cause of the dead letter that replaces a result the
// database refused; finish does not replace that one in turn.
type refusedResult struct{ msg string }

func (e refusedResult) Error() string { return e.msg }

// refused handles a result the database refuses (a value it cannot
// store): it would be refused every time, and a run left leased would run
// its step again at each lease expiry, each time calling the system. The
// run is dead-lettered instead (notified, counted and logged as any dead
// letter), with an attempt record in our own words only: the refused value
// may be in any part of the result.
func (x *Executor) refused(ctx context.Context, c store.ClaimedRun, p store.FinishParams, stored error) {
	a := p.Attempt
	x.die(ctx, p.Token, c, store.Attempt{
		StepIndex: a.StepIndex, StepID: a.StepID, System: a.System, Number: a.Number,
		Status: a.Status, Duration: a.Duration, StartedAt: a.StartedAt,
	}, refusedResult{fmt.Sprintf("the database refused the result of attempt %d of step %q (%v): the call to %s was made; check it there before replaying",
		a.Number, a.StepID, stored, a.System)}, "")
}

// submit commits one result through the finisher, retrying a few times
// when the store fails: the step's effect has happened, and giving up would
// let the lease lapse and the step run again. The run stays tracked
// meanwhile, so its lease keeps being renewed. A lost lease is final, and
// so is a refused result.
//
// A commit that failed may have applied all the same: one cut off by the
// commit timeout or a lost connection after the database committed. So
// before each retry it reads the run: if the run's last change is this
// result (its time and new state), the result is stored, and a retry
// would only record the attempt twice and find the lease gone (taking the
// run's end for a lease lost to another worker: no dead-letter alert, no
// metrics).
//
// The result is submitted without ctx's cancellation (each commit is bounded
// by CommitTimeout): a step's context ends with the shutdown grace, and a
// result submitted as it ends would be given up on while its commit is
// queued or in flight, and that commit cancelled when the committer stops,
// leaving the run leased, its attempt unrecorded and a dead letter
// unalerted (or a hold unstored: the run leased, held by no one, until its
// lease expires).
func (x *Executor) submit(ctx context.Context, p store.FinishParams) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for i, wait := range []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second} {
		if wait > 0 {
			time.Sleep(wait)
			if x.applied(ctx, p) {
				return nil
			}
		}
		var stored error
		stored, err = x.cycles.Submit(ctx, cycle{finish: p})
		if err == nil {
			return stored
		}
		if store.IsRefused(err) {
			return err
		}
		if i < 3 {
			x.cfg.Logger.Warn("attempt result not stored; retrying", "run_id", p.RunID, "error", err.Error())
		}
	}
	return err
}

// applied reports whether p is already the run's last change: its time
// (stored to the microsecond) and the state and step it moved the run to.
func (x *Executor) applied(ctx context.Context, p store.FinishParams) bool {
	// Bounded like the commits it follows: its context is never cancelled.
	ctx, cancel := context.WithTimeout(ctx, x.cfg.CommitTimeout)
	defer cancel()
	run, err := x.cfg.Store.GetRun(ctx, p.RunID)
	return err == nil && run.UpdatedAt.Equal(p.Now.Truncate(time.Microsecond)) && run.State == p.State && run.Step == p.Step
}

// traceAttempt ends the attempt's span (or marks the run's, when the run
// failed before any call) with the attempt's outcome and the run's new
// state, as far as the store took it.
func (x *Executor) traceAttempt(ctx context.Context, p store.FinishParams, wait time.Duration, cause, stored error) {
	if x.cfg.Tracer == nil {
		return
	}
	state := string(p.State)
	switch {
	case errors.Is(stored, store.ErrLeaseLost):
		state = "lease_lost"
	case stored != nil:
		state = "not_stored"
	}
	tracing.EndAttempt(ctx, tracing.AttemptEnd{
		Outcome: string(p.Attempt.Outcome), Status: p.Attempt.Status, Err: cause, RetryIn: wait, RunState: state,
	})
}

// interrupted hands the run back to the queue at its current step, untried,
// when ctx has ended (the shutdown grace is over: steps' contexts are
// cancelled). A run a worker takes up only then, or an evaluation or a
// call the cancellation cut off, is no fault of the run's: it must not be
// dead-lettered (a jq evaluation fails with the context's error) nor count
// an attempt. It reports whether it did.
func (x *Executor) interrupted(ctx context.Context, token string, c store.ClaimedRun, step *flow.Step, run store.Run) bool {
	if ctx.Err() == nil {
		return false
	}
	x.hold(ctx, token, c, step, run, &limit.Hold{Until: x.cfg.NowFunc(), Reason: "interrupted by shutdown"})
	return true
}

// hold puts a run back in the queue until h.Until without counting an
// attempt: it was not tried (its system's circuit is open, its credentials
// were refused, or its rate limit would keep the worker waiting).
func (x *Executor) hold(ctx context.Context, token string, c store.ClaimedRun, step *flow.Step, run store.Run, h *limit.Hold) {
	p := untried(run, token, x.cfg.NowFunc())
	// Retrying and naming its system: WakeHeld makes it due at once when
	// the system is resumed.
	p.State, p.HeldFor, p.DueAt, p.LastError = store.RunRetrying, step.System, h.Until, h.Reason
	err := x.submit(ctx, p)
	tracing.Held(ctx, h.Reason)
	if err != nil {
		x.cfg.Logger.Warn("run not held; it will be claimed again when its lease expires", "run_id", run.ID, "error", err.Error())
		return
	}
	x.cfg.Logger.Info("run held", "run_id", run.ID, "event_id", c.Event.ID, "flow", run.Flow, "step", step.ID,
		"system", step.System, "until", h.Until, "reason", h.Reason)
}

// untried returns the params that put a claimed run back at its step
// without recording an attempt, the claim's count undone: it was not
// tried. The caller sets the run's state, when it is due and its last
// error.
func untried(run store.Run, token string, now time.Time) store.FinishParams {
	return store.FinishParams{
		RunID: run.ID, Token: token, Now: now, Hold: true,
		Step: run.Step, StepID: run.StepID, RunAttempt: max(run.Attempt-1, 0),
	}
}
