package delivery_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
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
