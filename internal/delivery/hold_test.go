package delivery_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// TestHoldAtLaterStep: a run held at its second step (its system's rate
// limit would keep the worker waiting) goes back to the queue at that
// step, not the one it was claimed at, without counting an attempt there.
func TestHoldAtLaterStep(t *testing.T) {
	t.Parallel()
	// One token a few seconds: step one takes it, step two would wait
	// longer than a worker waits in place.
	b := setup(t, strings.Replace(twoSteps, "kind: fake", "kind: fake, rate_limit: { per_second: 0.2 }", 1))
	b.sys["first"].do = ok(map[string]any{"id": 1})
	b.sys["second"].do = ok(nil)
	b.insert(t, "k1", `{"n": 1}`)
	runs := b.runUntil(t, func(runs []store.Run) bool { return runs[0].State == store.RunRetrying })
	r := runs[0]
	require.Equal(t, 1, r.Step)
	require.Equal(t, "two", r.StepID)
	require.Equal(t, 0, r.Attempt, "the claim's count undone")
	require.Contains(t, r.LastError, "rate limit")
	require.Len(t, b.sys["first"].Calls(), 1)
	require.Empty(t, b.sys["second"].Calls())
	attempts, err := b.store.ListAttempts(t.Context(), r.ID)
	require.NoError(t, err)
	require.Len(t, attempts, 1, "no attempt recorded for the hold")
}
