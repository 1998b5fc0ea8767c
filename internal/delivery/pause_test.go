package delivery_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// manualClock is a settable time source for the gates.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestProbeKeepsOperatorPause: an operator pauses a system, paused already
// because it refused our credentials, while its probe is in flight. The
// probe's success must not lift the operator's pause, here or (through the
// store) on every node: only `systems resume` does. Whether this node has
// applied the operator's pause yet (it reads the store's pauses every few
// seconds) or not: deleting it from the store would lift it on every node.
func TestProbeKeepsOperatorPause(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		applied bool // this node's gate has the operator's pause already
	}{
		{"applied here", true},
		{"not yet read here", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, oneStep)
			clock := &manualClock{now: time.Now()}
			gates := delivery.NewGates(b.plan, clock.Now)
			gate := gates["sys"]
			// The credentials were refused a minute ago: the next call is
			// the probe.
			done, err := gate.Acquire(t.Context())
			require.NoError(t, err)
			done(limit.Unauthorized, 0)
			_, err = b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
			require.NoError(t, err)
			clock.Add(time.Hour)

			b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
				// The operator's pause arrives while the probe is in flight.
				_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: store.OperatorPause, Now: time.Now()})
				if err != nil {
					return connector.Result{}, err
				}
				if tt.applied {
					gate.Pause(false)
				}
				return connector.Result{Output: map[string]any{}, Status: 200}, nil
			}
			b.insert(t, "k1", `{"n": 1}`)
			x := delivery.New(delivery.Config{
				Store: b.store, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond, Gates: gates,
			})
			b.runWith(t, x, allFinished)

			pauses, err := b.store.ListPauses(t.Context())
			require.NoError(t, err)
			require.Len(t, pauses, 1, "the operator's pause is kept in the store")
			require.Equal(t, store.OperatorPause, pauses[0].Reason)
			if tt.applied {
				require.True(t, gate.State().Paused, "and on this node")
				_, err = gate.Acquire(t.Context())
				require.ErrorAs(t, err, new(*limit.Hold))
			}
		})
	}
}
