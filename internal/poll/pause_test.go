package poll_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
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

// TestScheduledPollSkippedWhileOperatorPaused: a scheduled poll of a
// system an operator paused is skipped, not failed: no page read, one
// warning a run saying how to resume, its failures, last error and last
// success left as they were (no poll_failing alert for a pause the
// operator chose), counted as "paused", not "error", and run again at its
// schedule. Once the system is resumed, the next run reads it.
func TestScheduledPollSkippedWhileOperatorPaused(t *testing.T) {
	a := newFakeAPI(t, "token", 5)
	want := seed(a)
	h := newHarness(t, strings.Replace(pollConfig(a, 100), "every: 1s", "every: 2s", 1), "")
	gates := delivery.NewGates(h.plan, nil)
	gates["api"].Pause(gates["api"].Mark(), false)
	// An earlier success, then a failure: a skip leaves both as they were.
	okAt := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	require.NoError(t, h.st.FinishPoll(t.Context(), store.PollRun{Source: "jobs", Now: okAt, NextRunAt: okAt}))
	require.NoError(t, h.st.FinishPoll(t.Context(), store.PollRun{Source: "jobs", Now: okAt.Add(time.Minute), NextRunAt: time.Now(), Error: "boom"}))

	logs := new(logtest.Buffer)
	p := poll.New(poll.Config{
		Plan: h.plan, Store: h.st, Engine: h.eng, Gates: gates, Metrics: h.m, Node: "n1",
		Logger: slog.New(slog.NewTextHandler(logs, nil)), RetryBase: 10 * time.Millisecond, Recheck: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	runs := func(outcome string) float64 {
		got, err := metricstest.Series(h.reg, "switchboard_poll_runs_total")
		require.NoError(t, err)
		return got[`switchboard_poll_runs_total{outcome="`+outcome+`",source="jobs"}`]
	}
	started := time.Now()
	require.Eventually(t, func() bool { return runs("paused")+runs("error") >= 2 }, 15*time.Second, 20*time.Millisecond)
	st := h.state("jobs")
	require.Zero(t, runs("error"), "a pause the operator chose is no failed run; log:\n%s", logs)
	require.Empty(t, a.log(), "no page read of a paused system")
	require.Equal(t, 1, st.Failures, "failures left as they were")
	require.Equal(t, "boom", st.LastError)
	require.True(t, st.LastOKAt.Equal(okAt), "last success left as it was: %s", st.LastOKAt)
	require.False(t, st.NextRunAt.After(time.Now().Add(2*time.Second)), "next run at the schedule: %s", st.NextRunAt)
	require.True(t, st.NextRunAt.After(started), "not at once: %s", st.NextRunAt)
	out := logs.String()
	require.NotContains(t, out, "level=ERROR")
	require.Contains(t, out, "level=WARN msg=\"poll skipped: system api is paused by an operator; `switchboard systems resume api`\"")
	require.Equal(t, int(runs("paused")), strings.Count(out, "poll skipped"), "one line a run")

	// Once resumed, the next scheduled run reads the system.
	require.True(t, gates["api"].Resume(gates["api"].Mark()))
	// Its events are committed page by page before the run's end is
	// recorded: wait for that.
	require.Eventually(t, func() bool { return h.state("jobs").LastOKAt.After(okAt) }, 15*time.Second, 20*time.Millisecond)
	require.Len(t, h.keys("jobs"), len(want))
	st = h.state("jobs")
	require.Zero(t, st.Failures)
	require.Empty(t, st.LastError)
	require.True(t, st.LastOKAt.After(okAt))
}
