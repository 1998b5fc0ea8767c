package delivery

import (
	"context"
	"fmt"

	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
)

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
