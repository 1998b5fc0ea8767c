package delivery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// countingClaims counts the claims that reach the store.
type countingClaims struct {
	store.Store
	claims atomic.Int32
}

func (s *countingClaims) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	if c != nil {
		s.claims.Add(1)
	}
	return s.Store.FinishAndClaim(ctx, ps, c)
}

// TestClockStepForwardKeepsRunsInFlight: the wall clock stepped forward by
// more than a lease (NTP correcting a clock that ran slow) while a step is
// in flight. The run's lease, set by the old clock, looks expired to the
// new one: the node must not claim its own run again and call the system a
// second time under it; it renews its leases first.
func TestClockStepForwardKeepsRunsInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	started, release := make(chan struct{}, 2), make(chan struct{})
	b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
		started <- struct{}{}
		<-release
		return connector.Result{Output: map[string]any{}, Status: 200}, nil
	}
	b.insert(t, "k1", `{"n": 1}`)
	st := &countingClaims{Store: b.store}
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 4, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, NowFunc: now,
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	<-started

	offset.Store(int64(time.Hour))
	// Let the claim loop claim a few times on the new clock.
	seen := st.claims.Load()
	require.Eventually(t, func() bool { return st.claims.Load() >= seen+3 }, 10*time.Second, time.Millisecond)
	close(release)
	b.waitFinished(t)
	cancel()
	require.NoError(t, <-done)
	require.Len(t, b.sys["first"].Calls(), 1, "one call: the run was not claimed again while in flight")
	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Equal(t, store.RunSucceeded, runs[0].State)
	attempts, err := b.store.ListAttempts(t.Context(), runs[0].ID)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
}
