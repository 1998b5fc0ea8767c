package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Run claims and executes runs until ctx ends, then lets the runs in flight
// finish their current step (at most Grace; then their calls are
// cancelled), records the results, and puts unfinished runs back in the
// queue so another node, or the next start, continues them at once.
func (x *Executor) Run(ctx context.Context) error {
	finCtx, stopFinisher := context.WithCancel(context.WithoutCancel(ctx))
	finDone := make(chan error, 1)
	go func() { finDone <- x.cycles.Run(finCtx) }()
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	renewDone := make(chan struct{})
	go func() { x.renew(renewCtx); close(renewDone) }()
	syncDone := make(chan struct{})
	go func() { x.pauses.Run(renewCtx); close(syncDone) }()

	// Steps in flight get their own context: cancelled only after the
	// grace period, so a shutdown lets them finish and record their result.
	stepCtx, cancelSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSteps()
	// Claims are batched: a claim is a write transaction, so claiming one
	// run each time a worker frees up would cost one commit per run. The
	// loop waits (briefly) until a quarter of the workers are free, then
	// queues its claim with the results waiting to be committed.
	// A claim waiting for its commit outlives ctx by the grace period, no
	// more: a store that hangs must not hold shutdown forever.
	claimCtx, stopClaims := context.WithCancel(context.WithoutCancel(ctx))
	defer stopClaims()
	stopGraceTimer := context.AfterFunc(ctx, func() { time.AfterFunc(x.cfg.Grace, stopClaims) })
	defer stopGraceTimer()
	minBatch := max(1, x.cfg.Workers/4)
	// busy counts the runs claimed and not yet done, queued ones included.
	var busy atomic.Int64
	freed := make(chan struct{}, 1)
	// The workers live as long as the executor: a goroutine per run would
	// start on a small stack and grow it (copying it) through each run's
	// deep HTTP call, ~3% of the CPU of a delivery.
	type job struct {
		token string
		run   store.ClaimedRun
	}
	jobs := make(chan job, x.cfg.Workers)
	var wg sync.WaitGroup
	for range x.cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				x.execute(stepCtx, j.token, j.run)
				x.untrack(j.run.Run.ID, j.token)
				busy.Add(-1)
				select {
				case freed <- struct{}{}:
				default:
				}
			}
		})
	}
	var seq int
	var clock clockWatch
	for ctx.Err() == nil {
		free := x.cfg.Workers - int(busy.Load())
		if free < minBatch {
			linger := time.NewTimer(2 * time.Millisecond)
			if free <= 0 {
				// Nothing to claim for: wait for a worker. (Below zero
				// while the workers whose runs ended with the last claim
				// return.)
				linger.Stop()
			}
			select {
			case <-freed:
				linger.Stop()
				continue
			case <-linger.C:
			case <-ctx.Done():
				linger.Stop()
				continue
			}
		}
		seq++
		token := fmt.Sprintf("%s-%d", x.node, seq)
		now := x.cfg.NowFunc()
		if clock.stepped(now, x.cfg.Lease/3) {
			// The leases of the runs in flight were set by the old clock
			// and may look expired to the new one: this claim would take
			// them again, and call their systems a second time while the
			// first calls run. Renew them from the new clock first.
			x.cfg.Logger.Warn("the clock stepped forward: renewing the leases of the runs in flight before claiming")
			x.renewRound(ctx)
			now = x.cfg.NowFunc()
		}
		// Not cancelled with ctx but Grace later (claimCtx): a claim that
		// commits after shutdown began is still executed (its runs stop
		// after one step), not left leased.
		ticket := &claimTicket{}
		_, err := x.cycles.Submit(claimCtx, cycle{claim: &store.ClaimParams{
			Token: token, Now: now, LeaseUntil: now.Add(x.cfg.Lease), Limit: free,
		}, ticket: ticket})
		claimed, limit, delivered := ticket.collect()
		if !delivered && err != nil && ctx.Err() == nil {
			x.cfg.Logger.Error("claim runs", "error", err)
			select { // the store is failing: do not spin on it
			case <-time.After(x.cfg.PollInterval):
			case <-ctx.Done():
			}
			continue
		}
		for _, c := range claimed {
			busy.Add(1)
			x.track(c.Run.ID, token)
			// Blocks only for the moment the claim runs ahead of the
			// workers it covers (see commit), which are returning.
			jobs <- job{token: token, run: c}
		}
		if len(claimed) > 0 && len(claimed) >= limit {
			continue // there may be more waiting
		}
		wait := x.idleWait(ctx)
		select {
		case <-x.wake:
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	x.stopping.Store(true)
	close(jobs)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(x.cfg.Grace):
		x.cfg.Logger.Warn("shutdown grace period over: cancelling steps in flight", "grace", x.cfg.Grace)
		cancelSteps()
		<-finished
	}
	stopRenew()
	<-renewDone
	<-syncDone
	stopFinisher()
	return <-finDone
}

// idleWait is how long to sleep when no run is claimable: until the next
// one is due, at most PollInterval.
func (x *Executor) idleWait(ctx context.Context) time.Duration {
	// Bounded: the claim loop waits on it.
	ctx, cancel := context.WithTimeout(ctx, x.cfg.CommitTimeout)
	defer cancel()
	due, ok, err := x.cfg.Store.NextDue(ctx)
	if err != nil || !ok {
		return x.cfg.PollInterval
	}
	// A few ms late is fine; waking early would only find nothing due.
	return min(max(due.Sub(x.cfg.NowFunc())+2*time.Millisecond, time.Millisecond), x.cfg.PollInterval)
}
