package poll_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// gatedSetup is a harness polling a fake API that holds jobs, and gates
// whose clock reads now (set it to move time on).
func gatedSetup(t *testing.T) (a *fakeAPI, h *harness, gates map[string]*limit.Gate, now *time.Time) {
	t.Helper()
	a = newFakeAPI(t, "token", 5)
	seed(a)
	h = newHarness(t, pollConfig(a, 100), "")
	now = new(time.Now())
	gates = delivery.NewGates(h.plan, func() time.Time { return *now })
	return a, h, gates, now
}

// TestPollProbeResumesSystem: a system paused because it refused our
// credentials lets one call through a minute. When that call is a poll's
// page read and it succeeds, the system is resumed as when a step's call
// is the probe (delivery's TestProbeResumesSystem): in the store too, for
// every node, or this node's sync would pause it again within seconds and
// its held runs would wait.
func TestPollProbeResumesSystem(t *testing.T) {
	t.Parallel()
	_, h, gates, now := gatedSetup(t)
	done, err := gates["api"].Acquire(t.Context())
	require.NoError(t, err)
	done(limit.Unauthorized, 0)
	_, err = h.st.PauseSystem(t.Context(), store.PauseParams{System: "api", Reason: "HTTP 401 from api", Now: *now})
	require.NoError(t, err)
	*now = now.Add(time.Minute) // the probe is due

	x := delivery.New(delivery.Config{Store: h.st, Plan: h.plan, Gates: gates})
	p := poll.New(poll.Config{
		Plan: h.plan, Store: h.st, Engine: h.eng, Gates: gates, ResumedFunc: x.LiftPause, Node: "n1",
	})
	_, err = p.Poll(t.Context(), h.plan.Sources["jobs"], poll.Options{})
	require.NoError(t, err)
	require.False(t, gates["api"].State().Paused, "the page read was the probe")
	pauses, err := h.st.ListPauses(t.Context())
	require.NoError(t, err)
	require.Empty(t, pauses, "lifted in the store, for every node")
}

// TestPollStopFunc: a poller whose StopFunc answers an error (the command
// line's, when a system it calls is paused in the store) ends the run
// with it before reading a page, even where the system's gate would let
// the read through: a credential pause whose probe is due, or a pause
// this node's gate has not applied or has lifted (a call in flight when it
// was applied succeeded). A pause applied between StopFunc's answer and
// the gate's ends the run too, not a wait for the gate.
func TestPollStopFunc(t *testing.T) {
	t.Parallel()
	operator := func(g *limit.Gate) { g.Pause(g.Mark(), false) }
	for _, tt := range []struct {
		name string
		// pause pauses gate, or not.
		pause func(gate *limit.Gate)
		// StopFunc answers the error from its stopAt-th call on.
		stopAt int
	}{
		{"gate paused by an operator", operator, 1},
		{"gate paused for credentials, probe due", func(g *limit.Gate) { g.Pause(g.Mark(), true) }, 1},
		{"gate not paused", func(*limit.Gate) {}, 1},
		{"paused between StopFunc and the gate", operator, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, h, gates, now := gatedSetup(t)
			tt.pause(gates["api"])
			*now = now.Add(time.Hour) // a credential pause's probe is due

			errPaused := errors.New("paused")
			var asked []string
			p := poll.New(poll.Config{
				Plan: h.plan, Store: h.st, Engine: h.eng, Gates: gates, Node: "n1",
				StopFunc: func(system string) error {
					if asked = append(asked, system); len(asked) < tt.stopAt {
						return nil
					}
					return errPaused
				},
			})
			_, err := p.Poll(t.Context(), h.plan.Sources["jobs"], poll.Options{})
			require.ErrorIs(t, err, errPaused)
			require.Len(t, asked, tt.stopAt)
			require.Equal(t, "api", asked[0])
			require.Empty(t, a.log(), "no page read")
		})
	}
}
