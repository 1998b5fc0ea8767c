package delivery_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// overClaim claims one run more than asked, as a claim does that covers
// the workers its commit's results free (see commit): for a moment a run
// waits in the executor for a worker.
type overClaim struct{ delivery.Store }

func (o overClaim) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	if c != nil {
		more := *c
		more.Limit++
		c = &more
	}
	return o.Store.FinishAndClaim(ctx, ps, c)
}

// blockingCall is an action whose first call lasts until its context ends
// (a slow system, outlasting the shutdown grace); it counts calls.
type blockingCall struct {
	started chan struct{}
	calls   atomic.Int32
}

func (b *blockingCall) Do(ctx context.Context, _ connector.Request) (connector.Result, error) {
	if b.calls.Add(1) == 1 {
		close(b.started)
		<-ctx.Done()
		return connector.Result{}, ctx.Err()
	}
	return connector.Result{Output: map[string]any{}, Status: 200}, nil
}

// TestRunAfterGraceIsHandedBack: a run that a worker takes up after the
// shutdown grace is over (its steps' context is cancelled) goes back to
// the queue untried; its inputs' evaluation, cut off by the cancellation,
// must not dead-letter it.
func TestRunAfterGraceIsHandedBack(t *testing.T) {
	t.Parallel()
	b := setup(t, `
version: 1
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, with: { value: '.n + 1' } }
`)
	call := &blockingCall{started: make(chan struct{})}
	b.plan.Flows["f"].Steps[0].Call = call
	b.insert(t, "a", `{"n": 1}`)
	b.insert(t, "b", `{"n": 2}`)
	logs := &logtest.Buffer{}
	x := delivery.New(delivery.Config{
		Store: overClaim{b.store}, Plan: b.plan, Workers: 1, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, Grace: 10 * time.Millisecond, Notifier: b.dead,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	<-call.started // one run in its call, the other waiting for the worker
	cancel()
	require.NoError(t, <-errc)

	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		require.Equal(t, store.RunRetrying, r.State, "handed back, not dead: %s\nlogs: %s", r.LastError, logs)
		require.Contains(t, r.LastError, "interrupted by shutdown")
		require.Zero(t, r.Attempt, "no attempt counted")
	}
	require.Empty(t, b.dead.dead)
	require.EqualValues(t, 1, call.calls.Load(), "the run taken up after the grace is not called")
}
