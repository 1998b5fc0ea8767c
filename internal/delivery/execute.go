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
