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

// TestPollProbeResumesSystem: a system paused because it refused our
// credentials lets one call through a minute. When that call is a poll's
// page read and it succeeds, the system is resumed as when a step's call
// is the probe (delivery's TestProbeResumesSystem): in the store too, for
// every node, or this node's sync would pause it again within seconds and
// its held runs would wait.
func TestPollProbeResumesSystem(t *testing.T) {
	t.Parallel()
	a := newFakeAPI(t, "token", 5)
	seed(a)
	h := newHarness(t, pollConfig(a, 100), "")
	now := time.Now()
	gates := delivery.NewGates(h.plan, func() time.Time { return now })
	done, err := gates["api"].Acquire(t.Context())
	require.NoError(t, err)
	done(limit.Unauthorized, 0)
	_, err = h.st.PauseSystem(t.Context(), store.PauseParams{System: "api", Reason: "HTTP 401 from api", Now: now})
	require.NoError(t, err)
	now = now.Add(time.Minute) // the probe is due

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

// TestPollStopsWhenPaused: a poller that stops at a paused system (the
// command line's) ends the run before reading a page of a system paused by
// an operator, or paused for refused credentials even when its probe is
// due (the read would be the probe), with a *PausedError naming it.
func TestPollStopsWhenPaused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		probe bool
	}{
		{"by an operator", false},
		{"credentials refused, probe due", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFakeAPI(t, "token", 5)
			seed(a)
			h := newHarness(t, pollConfig(a, 100), "")
			now := time.Now()
			gates := delivery.NewGates(h.plan, func() time.Time { return now })
			gates["api"].Pause(gates["api"].Mark(), tt.probe)
			now = now.Add(time.Hour) // a credential pause's probe is due

			p := poll.New(poll.Config{Plan: h.plan, Store: h.st, Engine: h.eng, Gates: gates, StopWhenPaused: true, Node: "n1"})
			_, err := p.Poll(t.Context(), h.plan.Sources["jobs"], poll.Options{})
			pe, ok := errors.AsType[*poll.PausedError](err)
			require.True(t, ok, "%v", err)
			require.Equal(t, "api", pe.System)
			require.Empty(t, a.log(), "no page read")
		})
	}
}
