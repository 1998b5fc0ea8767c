package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// TestPanicInStepDeadLetters: a connector that panics dead-letters its run
// (notified, with the panic in the error) instead of taking the node down,
// and gives its concurrency slot back: the system's other runs go on.
func TestPanicInStepDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, `
version: 1
retry: { base: 1ms, cap: 5ms, attempts: 3 }
systems: { sys: { kind: fake, concurrency: 1 } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, with: { value: .n } }
`)
	b.sys["first"].do = func(_ int, req connector.Request) (connector.Result, error) {
		if req.Input["value"] == "bad" {
			var fields []string
			_ = fields[len(req.Input)] // a connector bug: index out of range
		}
		return connector.Result{Output: map[string]any{}, Status: 200}, nil
	}
	b.insert(t, "bad", `{"n": "bad"}`)
	for _, k := range []string{"a", "b", "c"} {
		b.insert(t, k, `{"n": "good"}`)
	}
	runs := b.runUntil(t, allFinished)
	dead := 0
	for _, r := range runs {
		if r.State == store.RunDead {
			dead++
			require.Contains(t, r.LastError, "sys.first panicked")
			require.Contains(t, r.LastError, "index out of range")
		} else {
			require.Equal(t, store.RunSucceeded, r.State)
		}
	}
	require.Equal(t, 1, dead)
	require.Len(t, b.dead.dead, 1, "the dead letter is notified")
	require.Len(t, b.sys["first"].Calls(), 4, "the panicking run is not retried")
}

// panicOnCancel is a connector whose call, cut off by the end of the
// shutdown grace, panics (it reads the response it did not get, say).
type panicOnCancel struct{ started chan struct{} }

func (p panicOnCancel) Do(ctx context.Context, _ connector.Request) (connector.Result, error) {
	close(p.started)
	<-ctx.Done()
	var resp *connector.Result
	return *resp, nil // a connector bug: nil dereference
}

// TestPanicAtShutdownIsAlerted: a panic in a call the shutdown grace cut
// off dead-letters the run like any other panic, and the dead letter is
// stored and alerted: its result is not submitted with the cancelled
// context (which gave up waiting for the commit, so the run went dead in
// the store with no alert, no metric, and a log saying it would be
// retried).
func TestPanicAtShutdownIsAlerted(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	call := panicOnCancel{started: make(chan struct{})}
	b.plan.Flows["f"].Steps[0].Call = call
	ev := b.insert(t, "a", `{"n": 1}`)
	x := delivery.New(delivery.Config{
		Store: b.store, Plan: b.plan, Workers: 1, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, Grace: 10 * time.Millisecond, Notifier: b.dead,
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	<-call.started
	cancel()
	require.NoError(t, <-errc)

	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{EventID: ev.EventID})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, store.RunDead, runs[0].State, runs[0].LastError)
	require.Contains(t, runs[0].LastError, "panicked")
	b.dead.mu.Lock()
	defer b.dead.mu.Unlock()
	require.Len(t, b.dead.dead, 1, "the dead letter is alerted")
}
