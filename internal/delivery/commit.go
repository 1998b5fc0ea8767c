package delivery

import (
	"context"
	"sync"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// cycle is one item of the executor's commit queue: an attempt's result,
// or (claim set) the claim loop's request for more runs. A claim rides in
// the transaction of the results queued with it, so a busy executor pays
// one commit per cycle instead of one for its results and one for its
// claim.
type cycle struct {
	finish store.FinishParams
	claim  *store.ClaimParams
	// ticket carries a claim's runs to the claim loop (see claimTicket).
	ticket *claimTicket
}

// claimTicket settles the race between a commit and the claim loop giving
// up on its claim (the shutdown grace is over, the store is too slow):
// exactly one of them decides what happens to the claim's runs.
//
// A claim nobody waits for must not lease runs: no worker would take
// them, they would stay leased until their leases expire, and the claim
// would count an attempt on each that was never made (with enough of
// those, execute would take a run for a poison run and dead-letter it
// untried). So a claim given up before its commit is left out of it, and
// one given up while its transaction ran has its runs handed back, untried
// and uncounted, by the commit. The runs do not travel in the committer's
// result because Submit may return its context's error even when the
// result was ready (both cases of its select are then ready): the loop
// would drop runs the commit believed delivered.
type claimTicket struct {
	mu        sync.Mutex // guards the fields below
	abandoned bool
	delivered bool
	claimed   []store.ClaimedRun
	limit     int // the limit the claim was made with (raised in commit)
}

// wanted reports whether the claim loop still waits for the claim.
func (t *claimTicket) wanted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.abandoned
}

// deliver hands claimed to the claim loop and reports whether it was
// still waiting; if not, the caller must hand the runs back.
func (t *claimTicket) deliver(claimed []store.ClaimedRun, limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.abandoned {
		return false
	}
	t.delivered, t.claimed, t.limit = true, claimed, limit
	return true
}

// collect is called by the claim loop once Submit returned, whatever it
// returned: it takes the runs a commit delivered, or gives the claim up
// (ok false) so that no later commit takes it in or keeps its runs.
func (t *claimTicket) collect() (claimed []store.ClaimedRun, limit int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.delivered {
		t.abandoned = true
		return nil, 0, false
	}
	return t.claimed, t.limit, true
}

// commit applies one batch of cycles in one transaction.
func (x *Executor) commit(ctx context.Context, items []cycle) ([]error, error) {
	ps := make([]store.FinishParams, 0, len(items))
	var claim *store.ClaimParams
	var ticket *claimTicket
	ending := 0 // results after which their worker is free
	for _, it := range items {
		switch {
		case it.claim == nil:
			ps = append(ps, it.finish)
			if it.finish.State != store.RunRunning {
				ending++
			}
		case claim == nil && it.ticket.wanted():
			// A claim the loop gave up on (it is queued still when the
			// committer drains at shutdown, say) is left out: see
			// claimTicket.
			claim, ticket = it.claim, it.ticket
		}
		// A second claim cannot be queued (one loop claims, and waits for
		// its answer); it would get no runs and ask again.
	}
	if claim != nil {
		// The workers whose runs end in this commit are free once it is
		// done: claim for them too, or they would idle for a whole cycle.
		//
		// When a result is refused, the committer splits the batch and
		// this claim comes here alone, without that top-up. That is left
		// so on purpose: the claim is then exact for the workers known to
		// be free (never more), a full claim makes the claim loop ask again
		// at once (by then for the freed workers too), and a claim that was
		// not full found the queue empty, so the top-up would have claimed
		// nothing more. The cost is one more claim commit, after a split
		// that already paid one per item. Restoring the top-up would need
		// the committer to tell which items of a split batch were already
		// committed (a claim counting results committed after it would
		// lease runs no worker is free for).
		c := *claim
		c.Limit += ending
		claim = &c
	}
	if len(ps) == 0 && claim == nil {
		return make([]error, len(items)), nil // only a claim given up on
	}
	errs, claimed, err := x.cfg.Store.FinishAndClaim(ctx, ps, claim)
	if err != nil {
		return nil, err
	}
	if ticket != nil && !ticket.deliver(claimed, claim.Limit) {
		x.handBack(ctx, claim.Token, claimed)
	}
	out := make([]error, len(items))
	j := 0
	for i, it := range items {
		if it.claim == nil {
			out[i] = errs[j]
			j++
		}
	}
	return out, nil
}

// handBack puts back runs whose claim committed after the claim loop gave
// up on it: untried, due at once, with the claim's attempt undone.
// If it fails, the runs wait for their leases to expire, with one attempt
// counted that was not made.
func (x *Executor) handBack(ctx context.Context, token string, claimed []store.ClaimedRun) {
	if len(claimed) == 0 {
		return
	}
	// Its own bounded context: the commit's may be ending (the committer
	// stops at shutdown), and the claim's transaction just went through.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.cfg.CommitTimeout)
	defer cancel()
	now := x.cfg.NowFunc()
	ps := make([]store.FinishParams, 0, len(claimed))
	for _, c := range claimed {
		// As it was before the claim: pending if no attempt had counted
		// yet, and its last error kept.
		p := untried(c.Run, token, now)
		p.State, p.DueAt, p.LastError = store.RunPending, now, c.Run.LastError
		if c.Run.Attempt > 1 {
			p.State = store.RunRetrying
		}
		ps = append(ps, p)
	}
	errs, err := store.FinishAttempts(ctx, x.cfg.Store, ps)
	if err != nil {
		x.cfg.Logger.Warn("runs of a claim given up on not handed back; they are claimed again when their leases expire",
			"runs", len(ps), "error", err)
		return
	}
	back := 0
	for i, err := range errs {
		if err == nil {
			back++
			continue
		}
		x.cfg.Logger.Warn("run of a claim given up on not handed back; it is claimed again when its lease expires",
			"run_id", ps[i].RunID, "error", err)
	}
	x.cfg.Logger.Info("runs of a claim given up on handed back untried", "runs", back)
}
