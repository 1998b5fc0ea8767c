package delivery_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// stalledResults holds the first commit carrying results until its
// context ends (the committer stops), without applying it: a store too
// slow for the shutdown grace. Commits queued behind it wait.
type stalledResults struct {
	delivery.Store
	armed   atomic.Bool
	stalled chan struct{}
}

func (s *stalledResults) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	if len(ps) > 0 && s.armed.CompareAndSwap(true, false) {
		close(s.stalled)
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	return s.Store.FinishAndClaim(ctx, ps, c)
}

// TestClaimGivenUpIsNotCommitted: a claim still queued when the claim loop
// gives up on it (the grace is over) is not committed when the committer
// drains its queue at shutdown. Committed, it would lease runs no worker
// takes and count an attempt on each.
func TestClaimGivenUpIsNotCommitted(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = ok(map[string]any{"id": 1})
	b.sys["second"].do = ok(nil)
	st := &stalledResults{Store: b.store, stalled: make(chan struct{})}
	st.armed.Store(true)
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 2, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, Grace: 10 * time.Millisecond,
	})
	b.insert(t, "first", `{"n": 1}`)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	<-st.stalled // the first step's result waits for the store
	// A run to claim, and a claim (for the free worker) queued behind the
	// stalled commit.
	// (Due an hour ago: due before the claim's time, whenever it was taken.)
	ago := time.Now().Add(-time.Hour)
	res, err := b.store.InsertEvents(t.Context(), []store.NewEvent{{
		ID: store.NewID("evt_", ago), Source: "src", Key: "late", ReceivedAt: ago, Payload: []byte(`{"n": 2}`),
		Runs: []store.NewRun{{ID: store.NewID("run_", ago), Flow: "f", StepID: "one"}},
	}})
	require.NoError(t, err)
	late := res[0]
	require.Eventually(t, func() bool { return x.Pending() > 0 }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-errc)

	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{EventID: late.EventID})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, store.RunPending, runs[0].State, "not leased by a claim nobody waited for")
	require.Zero(t, runs[0].Attempt, "no attempt counted")
	require.Empty(t, b.sys["first"].Calls()[1:], "the late run was not called")
}

// claimOutlivesWaiter applies the first claim that leases runs, then holds
// its answer until the commit's context ends (the committer stops at
// shutdown): the claim loop gives up on the claim while its transaction
// has already gone through.
type claimOutlivesWaiter struct {
	delivery.Store
	armed   atomic.Bool
	claimed chan struct{}
}

func (s *claimOutlivesWaiter) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	errs, runs, err := s.Store.FinishAndClaim(ctx, ps, c)
	if err == nil && len(runs) > 0 && s.armed.CompareAndSwap(true, false) {
		close(s.claimed)
		<-ctx.Done()
	}
	return errs, runs, err
}

// TestClaimCommittedAfterWaiterLeftIsHandedBack: the runs of a claim that
// committed after the claim loop gave up on it go back to the queue at
// once, untried and with no attempt counted, instead of staying leased by
// nobody until their leases expire.
func TestClaimCommittedAfterWaiterLeftIsHandedBack(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = ok(map[string]any{"id": 1})
	b.sys["second"].do = ok(nil)
	st := &claimOutlivesWaiter{Store: b.store, claimed: make(chan struct{})}
	st.armed.Store(true)
	logs := &logtest.Buffer{}
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 2, Lease: time.Hour,
		PollInterval: 5 * time.Millisecond, Grace: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	ev := b.insert(t, "k", `{"n": 1}`)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	<-st.claimed
	cancel()
	require.NoError(t, <-errc)

	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{EventID: ev.EventID})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	r := runs[0]
	require.Equal(t, store.RunPending, r.State, "handed back, not left leased for an hour\nlogs: %s", logs)
	require.Zero(t, r.Attempt, "no attempt counted")
	require.False(t, r.DueAt.After(time.Now()), "claimable at once")
	require.Empty(t, b.sys["first"].Calls())
	attempts, err := b.store.ListAttempts(t.Context(), r.ID)
	require.NoError(t, err)
	require.Empty(t, attempts)
}
