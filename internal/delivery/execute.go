package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/tracing"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// MaxResponse is how much of a response body an attempt record keeps.
const MaxResponse = 64 << 10

// execute runs a claimed run's remaining steps, one attempt each, until the
// run succeeds, must wait for a retry, dies, or loses its lease.
func (x *Executor) execute(ctx context.Context, token string, c store.ClaimedRun) {
	run := c.Run
	ctx = x.cfg.Tracer.StartRun(ctx, tracing.Run{
		TraceParent: c.Event.TraceParent, Flow: run.Flow, RunID: run.ID, EventID: c.Event.ID,
		Source: c.Event.Source, Generation: run.Generation, Step: run.StepID,
	})
	defer tracing.EndRun(ctx)
	f, ok := x.cfg.Plan.Flows[run.Flow]
	if !ok {
		x.dead(ctx, token, c, attemptOf(run, nil, x.cfg.NowFunc()), fmt.Errorf("flow %q is not in the config any more", run.Flow))
		return
	}
	if run.Step >= len(f.Steps) || f.Steps[run.Step].ID != run.StepID {
		// The config changed under a run in progress: resuming at the same
		// index would run another step than the one it stopped at.
		x.dead(ctx, token, c, attemptOf(run, nil, x.cfg.NowFunc()),
			fmt.Errorf("flow %q changed since this run started: step %q is no longer step %d; replay the event to run the new flow", run.Flow, run.StepID, run.Step+1))
		return
	}
	if step := f.Steps[run.Step]; run.Attempt > step.Retry.Attempts {
		// Before anything else (the payload's decoding included): a run
		// that kills the node that executes it must stop here.
		if x.interrupted(ctx, token, c, step, run) || x.overLimit(ctx, token, c, step) {
			return
		}
	}
	payload, err := transform.Decode(c.Event.Payload)
	if err != nil {
		x.dead(ctx, token, c, attemptOf(run, nil, x.cfg.NowFunc()), fmt.Errorf("decode stored payload: %w", err))
		return
	}
	event := map[string]any{
		"id": c.Event.ID, "source": c.Event.Source, "key": c.Event.Key,
		"received_at": c.Event.ReceivedAt.Format(time.RFC3339Nano),
	}
	steps := map[string]any{}
	for _, o := range c.Outputs {
		v, err := transform.Decode(o.Output)
		if err != nil {
			// Later steps would read null where a value was: stop here.
			x.dead(ctx, token, c, attemptOf(run, nil, x.cfg.NowFunc()), fmt.Errorf("decode checkpoint of step %q: %w", o.StepID, err))
			return
		}
		steps[o.StepID] = v
	}
	if x.interrupted(ctx, token, c, f.Steps[run.Step], run) {
		return
	}
	if run.Step == 0 && f.When != nil {
		// The engine already evaluated the condition; it is only repeated
		// here to dead-letter a run whose condition failed to evaluate.
		if _, err := f.When.Eval(ctx, payload); err != nil {
			x.evalFailed(ctx, token, c, f.Steps[run.Step], run, attemptOf(run, nil, x.cfg.NowFunc()), fmt.Errorf("when: %w", err))
			return
		}
	}
	for run.Step < len(f.Steps) {
		step := f.Steps[run.Step]
		started := x.cfg.NowFunc()
		a := attemptOf(run, step, started)
		var input map[string]any
		if step.Input != nil {
			v, err := step.Input.Eval(ctx, payload, steps, event)
			if err != nil {
				x.evalFailed(ctx, token, c, step, run, a, fmt.Errorf("map inputs: %w", err))
				return
			}
			input, _ = v.(map[string]any)
		}
		key := IdempotencyKey(c.Event.Source, c.Event.Key, run.Flow, step.ID, run.Generation)
		if err := x.hopLimit(c, step); err != nil {
			x.dead(ctx, token, c, a, err)
			return
		}
		write := writeStep{step: step, key: key, input: input, payload: payload, steps: steps, event: event}
		gate := x.gates[step.System]
		release, err := gate.Acquire(ctx)
		var hold *limit.Hold
		if errors.As(err, &hold) {
			x.hold(ctx, token, c, step, run, hold)
			return
		}
		if err != nil {
			// Shutting down while waiting for a token or a slot: hand the
			// run back now rather than leave it leased until expiry.
			x.interrupted(ctx, token, c, step, run)
			return
		}
		// The fingerprint is durable before the call: the system may send
		// the write's echo before it even answers.
		fp, err := x.fingerprint(ctx, c, write, x.cfg.NowFunc())
		if err != nil {
			release(limit.Refused, 0)
			x.evalFailed(ctx, token, c, step, run, a, fmt.Errorf("fingerprint the write: %w", err))
			return
		}
		if fp != nil {
			if err := x.cfg.Store.SaveFingerprint(ctx, *fp); err != nil {
				release(limit.Refused, 0)
				x.hold(ctx, token, c, step, run, &limit.Hold{Until: x.cfg.NowFunc().Add(time.Second), Reason: "fingerprint not saved: " + err.Error()})
				return
			}
		}
		started = x.cfg.NowFunc()
		a.StartedAt = started
		// From here to the end of this step, actx holds the attempt's span:
		// the call carries its traceparent and finish ends it.
		actx := x.cfg.Tracer.StartAttempt(ctx, tracing.Attempt{
			Flow: run.Flow, Step: step.ID, Index: run.Step, System: step.System, Number: run.Attempt,
		})
		res, callErr := callStep(actx, step, connector.Request{Input: input, IdempotencyKey: key})
		if p, ok := errors.AsType[*panicError](callErr); ok {
			// A bug in the connector, not the system's fault. The run
			// is dead-lettered (alerted, replayable once fixed) rather
			// than retried into the same panic; the write may have been
			// made, so its fingerprint stays.
			release(limit.Refused, 0)
			x.cfg.Logger.Error("step panicked", "run_id", run.ID, "flow", run.Flow, "step", step.ID,
				"system", step.System, "panic", fmt.Sprint(p.value), "stack", string(p.stack))
			x.dead(actx, token, c, a, callErr)
			return
		}
		if ctx.Err() != nil {
			// Cut off by the end of the shutdown grace: not the system's
			// fault and not a real attempt. The run goes back to the queue
			// at this step (the call is repeated with the same key).
			release(limit.Refused, 0)
			x.interrupted(actx, token, c, step, run)
			return
		}
		outcome, retryAfter := connector.GateOutcome(res.Status, callErr)
		// Only when this success lifted the pause here (the probe's, as a
		// rule): an operator's pause, applied while this call was in
		// flight, stays until resumed.
		if release(outcome, retryAfter) {
			x.LiftPause(ctx, step.System)
		}
		if outcome == limit.Unauthorized {
			// The credentials were refused: every run of this system would
			// fail the same way. The system is paused on every node (one
			// probe a minute) and this run waits with the others. Once the
			// record is in, a read of the pauses that no longer finds it
			// may lift the gate's pause (see limit.Gate.Resume).
			mark := gate.Mark()
			first, err := x.cfg.Store.PauseSystem(ctx, store.PauseParams{
				System: step.System, Reason: fmt.Sprintf("HTTP %d from %s", res.Status, step.System), Now: x.cfg.NowFunc(),
			})
			if err != nil {
				x.cfg.Logger.Warn("record system paused", "system", step.System, "error", err)
			} else {
				gate.Recorded(mark)
			}
			if first {
				x.cfg.Logger.Error("system paused: credentials refused; its runs wait for a successful probe or `switchboard systems resume`",
					"system", step.System, "status", res.Status, "flow", run.Flow, "run_id", run.ID)
				if n, ok := x.cfg.Notifier.(SystemNotifier); ok {
					n.SystemPaused(step.System, fmt.Sprintf("it answered HTTP %d (credentials refused)", res.Status))
				}
			}
			// This run's call did happen: it is recorded and counted like a
			// transient failure, waiting at least until the recheck, so a
			// 403 that is about this one record (and not the credentials)
			// still ends in the dead-letter queue after its attempts.
			callErr = connector.RetryAfter(15*time.Second, fmt.Errorf("credentials refused: %w", callErr))
		}
		now := x.cfg.NowFunc()
		a.Duration = now.Sub(started)
		x.cfg.Metrics.StepDuration(step.System, a.Duration)
		a.Status = res.Status
		a.Response = truncate(res.Body)

		if callErr == nil {
			a.Outcome = store.AttemptSucceeded
			next := run.Step + 1
			p := store.FinishParams{
				RunID: run.ID, Token: token, Now: now, Attempt: a,
				Step: next, RunAttempt: 1, DueAt: now.Add(x.cfg.Lease),
			}
			if next < len(f.Steps) {
				// No later step reads the last output and a finished run
				// never resumes, so only earlier steps are checkpointed
				// (the attempt keeps the response body): one write and one
				// encoding less per run.
				out, err := json.Marshal(res.Output)
				if err != nil {
					x.dead(actx, token, c, a, fmt.Errorf("encode output: %w", err))
					return
				}
				p.Output = out
			}
			if fp != nil {
				// Completed with the record's id (known now for a create)
				// in the transaction that finishes the attempt.
				write.answered, write.output = true, res.Output
				p.Fingerprint = answered(ctx, c, write, fp, now)
				if p.Fingerprint.RecordID == "" && step.Write.RecordID != nil {
					x.cfg.Logger.Warn("the write's record_id gave no id after the call: its echo is matched by the written fields alone, for two minutes",
						"run_id", run.ID, "flow", run.Flow, "step", step.ID, "system", step.System, "entity", step.Write.Entity)
				}
			}
			stopping := x.stopping.Load()
			switch {
			case next == len(f.Steps):
				p.State, p.RunAttempt, p.DueAt = store.RunSucceeded, run.Attempt, now
			case stopping:
				// Shutting down: hand the rest of the run back to the queue.
				p.State, p.StepID, p.RunAttempt, p.DueAt = store.RunPending, f.Steps[next].ID, 0, now
			default:
				p.State, p.StepID = store.RunRunning, f.Steps[next].ID
			}
			if !x.finish(actx, c, p, 0, nil) || stopping {
				return
			}
			steps[step.ID] = res.Output
			// run says what the store does now (untried reads its step).
			run.Step, run.StepID, run.Attempt = next, p.StepID, 1
			continue
		}

		a.Error = callErr.Error()
		if connector.IsPermanent(callErr) && outcome != limit.Unauthorized {
			// The system refused the write: no echo of it will come, and
			// its fingerprint would hide a person's change to the same
			// values. After a transient failure (and so after exhausted
			// retries) it stays: the call may have taken effect.
			drop := ""
			if fp != nil {
				drop = fp.ID
			}
			x.die(actx, token, c, a, callErr, drop)
			return
		}
		x.retry(actx, token, c, step.Retry, run, a, callErr, now)
		return
	}
}

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

// overLimit dead-letters, without calling anything, a run claimed past its
// step's attempt limit: attempts of the step were lost with their worker.
//
// What the count means. A run's attempt counts the attempts started at its
// current step: a claim starts one (the store adds one as it leases the
// run), and so does moving on to the next step in the same lease (a
// success sets 1). It is reset when a step succeeds and by `retry`. Every
// attempt that ends normally records its outcome, and the last allowed one
// (attempt == limit) ends the run, dead, unless it succeeded; so a run
// only comes back with attempt > limit if some earlier attempt recorded
// nothing at all. Runs that were not tried do not count: a hold (rate
// limit, open circuit, paused system, fingerprint not saved) and a hand
// back at shutdown (interrupted, or the rest of a run after its current
// step) undo the claim's count, and a claim the claim loop gave up on is
// never committed, or is handed back the same way (see claimTicket).
//
// What is left is a lost attempt: the run was claimed (or moved on to its
// next step) by a node that then stopped holding it without recording
// anything, because it was killed (OOM, kill -9, a reboot, a fatal runtime
// error) or hung, and its lease expired. That may have happened before
// its call (the payload's decoding, the input mapping) or during it, and
// the run is as likely as any to be what killed the node: a poison run
// claimed again and again would crash-loop every node. So lost attempts
// count as attempts, and once the limit's worth have been started the run
// is dead-lettered, alerted and replayable, before it is decoded or called.
//
// Why this is safe. It never cuts a scheduled retry short: a run that
// failed its last allowed attempt is dead already, and one that comes back
// past a limit lowered since without any lost attempt (every attempt is
// recorded) gets its call, as before. Lost attempts are told apart by
// their missing records (one query, on this rare path only). A node that
// was alive but lost its lease (renewals failing for a whole lease) was
// still making its attempt, which counts; its result is refused when it
// comes (lease lost) and recorded beside the dead letter. What can still
// count an attempt never made is a store failure at the wrong moment (a
// claim whose commit timed out after the database applied it, a hand-back
// that could not be stored): one per failure, never a loop. And a node
// that dies costs every run it held an attempt, not only the one that
// killed it: they are dead-lettered only if they were in flight at the
// limit's worth of crashes.
//
// It reports whether it did; if not, the run goes on as usual.
func (x *Executor) overLimit(ctx context.Context, token string, c store.ClaimedRun, step *flow.Step) bool {
	run := c.Run
	made, limit := run.Attempt-1, step.Retry.Attempts
	lost, err := x.lostAttempts(ctx, run)
	if err == nil && len(lost) == 0 {
		// The limit was lowered under a run retrying normally: it gets the
		// attempt it was claimed for (and is dead-lettered if that fails).
		x.cfg.Logger.Info("run past a lowered attempt limit; trying it once more",
			"run_id", run.ID, "flow", run.Flow, "step", step.ID, "attempt", run.Attempt, "limit", limit)
		return false
	}
	a := attemptOf(run, step, x.cfg.NowFunc())
	var cause error
	switch {
	case err != nil:
		// The count says the attempts were started; whether their
		// records are all there is unknown. Failing safe: a poison run
		// must not be tried again because the store was slow to answer.
		a.Number = made
		cause = fmt.Errorf("%d attempts of step %q were started and its retry policy allows %d; an attempt whose record is missing was lost with its worker (the node stopped or crashed during it; the attempts could not be read: %v); not tried again",
			made, step.ID, limit, err)
	case made == limit:
		// The record stands for the lost attempt (the usual case: the
		// last allowed one).
		a.Number = lost[len(lost)-1]
		cause = fmt.Errorf("attempt %d of %d was lost with its worker (the node stopped or crashed during the step, was cut off from the database for a whole lease, or could not store its result); not tried again: if this run crashes the node, fix that before retrying it",
			a.Number, limit)
	default:
		a.Number = lost[len(lost)-1]
		cause = fmt.Errorf("attempt %d was lost with its worker (the node stopped or crashed during the step, was cut off from the database for a whole lease, or could not store its result), and %d attempts have been started while the step's retry policy now allows %d; not tried again: if this run crashes the node, fix that before retrying it",
			a.Number, made, limit)
	}
	x.dead(ctx, token, c, a, cause)
	return true
}

// lostAttempts returns the numbers, oldest first, of the attempts started
// at run's current step (1 to run.Attempt-1) that left no record: the
// lost ones. Only the records since the step's last dead letter count:
// `retry` starts the count again at 1.
func (x *Executor) lostAttempts(ctx context.Context, run store.Run) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.CommitTimeout)
	defer cancel()
	attempts, err := x.cfg.Store.ListAttempts(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	recorded := map[int]bool{}
	for _, a := range attempts {
		switch {
		case a.StepIndex != run.Step:
		case a.Outcome == store.AttemptDead:
			clear(recorded)
		default:
			recorded[a.Number] = true
		}
	}
	var lost []int
	for n := 1; n < run.Attempt; n++ {
		if !recorded[n] {
			lost = append(lost, n)
		}
	}
	return lost, nil
}

// panicError is a panic in a step's call, caught.
type panicError struct {
	action string
	value  any
	stack  []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%s panicked (a bug in the connector; the call may have been made, check the system before replaying): %v", e.action, e.value)
}

// callStep makes a step's call and catches a panic in the connector: left
// to run its course it would end the process with every run in flight,
// and the run, claimed again after the restart (or by another node),
// would do it again, without end.
func callStep(ctx context.Context, step *flow.Step, req connector.Request) (res connector.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = connector.Result{}, &panicError{action: step.System + "." + step.Action, value: v, stack: debug.Stack()}
		}
	}()
	return step.Call.Do(ctx, req)
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

func attemptOf(run store.Run, step *flow.Step, started time.Time) store.Attempt {
	a := store.Attempt{RunID: run.ID, StepIndex: run.Step, StepID: run.StepID, Number: run.Attempt, StartedAt: started}
	if step != nil {
		a.StepID, a.System = step.ID, step.System
	}
	return a
}

func truncate(b []byte) []byte {
	if len(b) > MaxResponse {
		return b[:MaxResponse]
	}
	return b
}
