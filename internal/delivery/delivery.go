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
	ListPauses(ctx context.Context) ([]store.SystemPause, error)
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

// Pending returns how many attempt results wait for a commit.
func (x *Executor) Pending() int { return x.cycles.Pending() }

// Notify wakes an idle executor: new runs were committed.
func (x *Executor) Notify() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

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

func (x *Executor) track(runID, token string) {
	x.mu.Lock()
	x.inflight[runID] = token
	x.mu.Unlock()
}

// untrack forgets a run, unless this node has claimed it again since
// (its lease lapsed): the newer claim's lease must keep being renewed.
func (x *Executor) untrack(runID, token string) {
	x.mu.Lock()
	if x.inflight[runID] == token {
		delete(x.inflight, runID)
	}
	x.mu.Unlock()
}

// renew extends the leases of runs in flight every third of a lease, so a
// slow step keeps its run while a dead node's runs expire.
func (x *Executor) renew(ctx context.Context) {
	t := time.NewTicker(x.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		x.renewRound(ctx)
	}
}

// renewRound extends the lease of every run in flight.
func (x *Executor) renewRound(ctx context.Context) {
	x.mu.Lock()
	byToken := map[string][]string{}
	for id, tok := range x.inflight {
		byToken[tok] = append(byToken[tok], id)
	}
	x.mu.Unlock()
	// The round is bounded at half a lease: a slow renewal still lands
	// before the leases lapse (two intervals after the last), while one
	// hung on a connection the database stopped answering would hold every
	// later renewal (until TCP gives up, minutes). Each renewal extends from
	// its own start, not the round's.
	rctx, cancel := context.WithTimeout(ctx, x.cfg.Lease/2)
	defer cancel()
	for tok, ids := range byToken {
		now := x.cfg.NowFunc()
		err := x.cfg.Store.ExtendLeases(rctx, store.ExtendParams{Token: tok, RunIDs: ids, LeaseUntil: now.Add(x.cfg.Lease), Now: now})
		if err != nil && ctx.Err() == nil {
			x.cfg.Logger.Error("extend leases", "runs", len(ids), "error", err)
		}
	}
}

// clockWatch tells when the wall clock stepped forward (NTP correcting a
// clock that ran slow, a VM resumed) by comparing it with the monotonic
// clock, which only counts time that passed.
type clockWatch struct {
	wall time.Time // NowFunc's reading
	mono time.Time // time.Now's, for its monotonic part
}

// stepped reports whether wall moved ahead of real time by more than
// limit since the last call.
func (c *clockWatch) stepped(wall time.Time, limit time.Duration) bool {
	mono := time.Now()
	prev := *c
	*c = clockWatch{wall: wall, mono: mono}
	if prev.wall.IsZero() {
		return false
	}
	return wall.Round(0).Sub(prev.wall.Round(0))-mono.Sub(prev.mono) > limit
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
