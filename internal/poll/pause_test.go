package poll_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// systemNotes records what the executor tells its notifier of systems.
type systemNotes struct {
	mu      sync.Mutex // guards resumed
	resumed []string
}

func (n *systemNotes) RunDead(context.Context, delivery.DeadRun) {}
func (n *systemNotes) SystemPaused(string, string)               {}
func (n *systemNotes) SystemResumed(system string) {
	n.mu.Lock()
	n.resumed = append(n.resumed, system)
	n.mu.Unlock()
}

// TestPollProbeResumesSystem: a system paused because it refused our
// credentials lets one call through a minute. When that call is a poll's
// page read and it succeeds, the system is resumed as when a step's call
// is the probe: in the store (for every node; this node's sync would
// otherwise pause it again within seconds), the runs held for it go at
// once, and the alert is resolved.
func TestPollProbeResumesSystem(t *testing.T) {
	t.Parallel()
	a := newFakeAPI(t, "token", 5)
	seed(a)
	h := newHarness(t, pollConfig(a, 100), "")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	gates := delivery.NewGates(h.plan, clock)
	done, err := gates["api"].Acquire(t.Context())
	require.NoError(t, err)
	done(limit.Unauthorized, 0)
	_, err = h.st.PauseSystem(t.Context(), store.PauseParams{System: "api", Reason: "HTTP 401 from api", Now: now})
	require.NoError(t, err)

	// A run of the system is held until the next probe.
	runID := store.NewID("run_", now)
	_, err = h.st.InsertEvents(t.Context(), []store.NewEvent{{
		ID: store.NewID("evt_", now), Source: "jobs", Key: "k1", ReceivedAt: now, Payload: []byte(`{}`),
		Runs: []store.NewRun{{ID: runID, Flow: "sync", StepID: "push"}},
	}})
	require.NoError(t, err)
	notes := &systemNotes{}
	x := delivery.New(delivery.Config{
		Store: h.st, Plan: h.plan, Workers: 1, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond,
		Gates: gates, Notifier: notes,
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	require.Eventually(t, func() bool {
		r, err := h.st.GetRun(t.Context(), runID)
		return err == nil && strings.Contains(r.LastError, "credentials refused")
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-errc)

	mu.Lock()
	now = now.Add(time.Minute) // the probe is due
	mu.Unlock()
	p := poll.New(poll.Config{
		Plan: h.plan, Store: h.st, Engine: h.eng, Gates: gates, ResumedFunc: x.LiftPause, Node: "n1",
	})
	_, err = p.Poll(t.Context(), h.plan.Sources["jobs"], poll.Options{})
	require.NoError(t, err)
	require.False(t, gates["api"].State().Paused, "the page read was the probe")
	pauses, err := h.st.ListPauses(t.Context())
	require.NoError(t, err)
	require.Empty(t, pauses, "lifted in the store, for every node")
	r, err := h.st.GetRun(t.Context(), runID)
	require.NoError(t, err)
	require.False(t, r.DueAt.After(time.Now()), "the held run is due at once")
	notes.mu.Lock()
	defer notes.mu.Unlock()
	require.Equal(t, []string{"api"}, notes.resumed)
}
