package delivery_test

import (
	"context"
	"errors"
	"strings"
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
			refusedCredentials(t, b, gate)
			clock.Add(time.Hour)

			b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
				// The operator's pause arrives while the probe is in flight.
				_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: store.OperatorPause, Now: time.Now()})
				if err != nil {
					return connector.Result{}, err
				}
				if tt.applied {
					gate.Pause(gate.Mark(), false)
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

// steppedPauses hands each read of the paused systems to the test: the
// read waits for the test before it starts and again before its result
// goes back to the executor.
type steppedPauses struct {
	store.Store
	at   chan struct{} // a read is about to start, or has been made
	next chan struct{} // the test lets it go on
}

func (s *steppedPauses) ListPauses(ctx context.Context) ([]store.SystemPause, error) {
	s.step(ctx)
	ps, err := s.Store.ListPauses(ctx)
	s.step(ctx)
	return ps, err
}

func (s *steppedPauses) step(ctx context.Context) {
	select {
	case s.at <- struct{}{}:
	case <-ctx.Done():
		return
	}
	select {
	case <-s.next:
	case <-ctx.Done():
	}
}

// TestSyncKeepsPauseNotYetRead: this node's call is refused (401), which
// pauses its gate at once and records the pause in the store just after.
// A read of the store's pauses that could not see that record (it began
// after the refusal, or before the record committed) must not lift the
// pause: calls would go out again and draw more 401s. Once a read has seen
// the record, a later read that no longer finds it (an operator resumed
// the system) lifts it.
func TestSyncKeepsPauseNotYetRead(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// refusedAfterRead: the 401 comes while the first read is made,
		// not before it.
		refusedAfterRead bool
	}{
		{"refused before the read, recorded after it", false},
		{"refused after the read began", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, oneStep)
			gates := delivery.NewGates(b.plan, nil)
			gate := gates["sys"]
			refuse := func() {
				done, err := gate.Acquire(t.Context())
				require.NoError(t, err)
				done(limit.Unauthorized, 0)
			}
			st := &steppedPauses{Store: b.store, at: make(chan struct{}), next: make(chan struct{})}
			x := delivery.New(delivery.Config{Store: st, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, Gates: gates})
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() { errc <- x.Run(ctx) }()
			defer func() {
				cancel()
				require.NoError(t, <-errc)
			}()
			read := func(before, after func()) {
				<-st.at
				if before != nil {
					before()
				}
				st.next <- struct{}{}
				<-st.at
				if after != nil {
					after()
				}
				st.next <- struct{}{}
			}

			if tt.refusedAfterRead {
				read(nil, refuse)
			} else {
				read(refuse, nil)
			}
			read(func() {
				require.True(t, gate.State().Paused, "a read that could not see the pause does not lift it")
				_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
				require.NoError(t, err)
			}, nil)
			read(func() {
				require.True(t, gate.State().Paused)
				ok, err := b.store.ResumeSystem(t.Context(), "sys")
				require.NoError(t, err)
				require.True(t, ok)
			}, nil)
			<-st.at
			require.False(t, gate.State().Paused, "a read that no longer finds a pause it has seen lifts it")
			st.next <- struct{}{}
		})
	}
}

// systemNotes records what the executor tells its notifier of systems.
type systemNotes struct {
	deadRecorder
	mu      sync.Mutex // guards resumed
	resumed []string
}

func (n *systemNotes) SystemPaused(string, string) {}
func (n *systemNotes) SystemResumed(system string) {
	n.mu.Lock()
	n.resumed = append(n.resumed, system)
	n.mu.Unlock()
}

// TestProbeResumesSystem: the probe of a system paused because it refused
// our credentials succeeds: the pause is lifted in the store (for every
// node), the runs held for it go at once rather than at their next check,
// and the notifier is told (the alert resolves).
func TestProbeResumesSystem(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	b.sys["first"].do = ok(map[string]any{})
	clock := &manualClock{now: time.Now()}
	gates := delivery.NewGates(b.plan, clock.Now)
	refusedCredentials(t, b, gates["sys"])
	b.insert(t, "k1", `{"n": 1}`)
	b.insert(t, "k2", `{"n": 2}`)
	notes := &systemNotes{}
	newExecutor := func() *delivery.Executor {
		return delivery.New(delivery.Config{
			Store: b.store, Plan: b.plan, Workers: 2, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond,
			Gates: gates, Notifier: notes,
		})
	}
	b.runWith(t, newExecutor(), func(runs []store.Run) bool {
		return len(runs) == 2 && runs[0].State == store.RunRetrying && runs[1].State == store.RunRetrying
	}) // held until the probe, a minute from now

	clock.Add(time.Minute)
	b.insert(t, "k3", `{"n": 3}`) // its call is the probe
	b.runWith(t, newExecutor(), func(runs []store.Run) bool { return len(runs) == 3 && allFinished(runs) })
	requireLifted(t, b.store, notes)
}

// refusedCredentials answers a call through gate with 401 and records the
// pause in the store, as a node that met the refusal does.
func refusedCredentials(t *testing.T, b *bundle, gate *limit.Gate) {
	t.Helper()
	done, err := gate.Acquire(t.Context())
	require.NoError(t, err)
	done(limit.Unauthorized, 0)
	_, err = b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
	require.NoError(t, err)
}

// requireLifted checks that sys's pause is lifted in the store, for every
// node, and that the nodes were told.
func requireLifted(t *testing.T, st store.Store, notes *systemNotes) {
	t.Helper()
	pauses, err := st.ListPauses(t.Context())
	require.NoError(t, err)
	require.Empty(t, pauses, "lifted in the store, for every node")
	notes.mu.Lock()
	defer notes.mu.Unlock()
	require.Equal(t, []string{"sys"}, notes.resumed)
}

// TestPauseSyncPaused: PauseSync.Paused tells a system's pause as the last
// read found it in the store, whatever the gate says since: a call in
// flight when a credential pause was applied lifts it on the gate when it
// succeeds, and the store still holds it (the command line stops at what
// Paused says).
func TestPauseSyncPaused(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	gates := delivery.NewGates(b.plan, nil)
	s := &delivery.PauseSync{Store: b.store, Gates: gates}
	at := time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)
	_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: at})
	require.NoError(t, err)
	done, err := gates["sys"].Acquire(t.Context()) // in flight when the pause is applied
	require.NoError(t, err)
	_, ok := s.Paused("sys")
	require.False(t, ok, "nothing read yet")

	pauses, err := s.Sync(t.Context())
	require.NoError(t, err)
	require.Len(t, pauses, 1)
	require.True(t, gates["sys"].State().Paused)
	require.True(t, done(limit.Succeeded, 0), "the call's success lifts the pause on the gate")
	p, ok := s.Paused("sys")
	require.True(t, ok, "not in the store")
	require.Equal(t, "HTTP 401 from sys", p.Reason)
	require.True(t, p.PausedAt.Equal(at))

	_, err = b.store.ResumeSystem(t.Context(), "sys")
	require.NoError(t, err)
	_, err = s.Sync(t.Context())
	require.NoError(t, err)
	_, ok = s.Paused("sys")
	require.False(t, ok)
}

// TestLiftPauseOutlivesCaller: a probe's success lifted a credential pause
// on this node, and its caller is cut off just after (shutdown, a poll's
// timeout) before the lift is recorded. The lift is recorded anyway:
// otherwise the store's pause would hold every other node until the next
// probe, a minute later.
func TestLiftPauseOutlivesCaller(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
	require.NoError(t, err)
	notes := &systemNotes{}
	x := delivery.New(delivery.Config{Store: b.store, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, Notifier: notes})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	x.LiftPause(ctx, "sys")

	requireLifted(t, b.store, notes)
}

// TestSyncCredentialPauseAfterOperatorPause: this node read an operator's
// pause; before its next read the operator resumed the system and another
// node's 401 paused it again. That read finds a credential pause and
// applies it as one: this node probes the system again, rather than hold
// its runs as if an operator had paused it, for good.
func TestSyncCredentialPauseAfterOperatorPause(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	clock := &manualClock{now: time.Now()}
	gates := delivery.NewGates(b.plan, clock.Now)
	s := &delivery.PauseSync{Store: b.store, Gates: gates}
	_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: store.OperatorPause, Now: time.Now()})
	require.NoError(t, err)
	_, err = s.Sync(t.Context())
	require.NoError(t, err)
	_, err = gates["sys"].Acquire(t.Context())
	h, ok := errors.AsType[*limit.Hold](err)
	require.True(t, ok)
	require.True(t, h.Operator)

	_, err = b.store.ResumeSystem(t.Context(), "sys")
	require.NoError(t, err)
	_, err = b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
	require.NoError(t, err)
	_, err = s.Sync(t.Context())
	require.NoError(t, err)
	_, err = gates["sys"].Acquire(t.Context())
	h, ok = errors.AsType[*limit.Hold](err)
	require.True(t, ok, "still paused")
	require.False(t, h.Operator, "a credential pause: %s", h.Reason)
	clock.Add(time.Hour)
	done, err := gates["sys"].Acquire(t.Context())
	require.NoError(t, err, "the probe goes")
	require.True(t, done(limit.Succeeded, 0))
}

// TestSyncBeforeLiftKeepsItLifted: a read of the store's pauses begins
// while a system is paused for refused credentials; before it ends, this
// node's probe succeeds and lifts the pause, here and in the store. The
// read, which still shows the pause, does not pause the gate again (runs
// would be held until the next read).
func TestSyncBeforeLiftKeepsItLifted(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	clock := &manualClock{now: time.Now()}
	gates := delivery.NewGates(b.plan, clock.Now)
	gate := gates["sys"]
	refusedCredentials(t, b, gate)
	x := delivery.New(delivery.Config{Store: b.store, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, Gates: gates})
	st := &steppedPauses{Store: b.store, at: make(chan struct{}), next: make(chan struct{})}
	s := &delivery.PauseSync{Store: st, Gates: gates}
	clock.Add(time.Minute)

	errc := make(chan error, 1)
	go func() { _, err := s.Sync(t.Context()); errc <- err }()
	<-st.at // the read is about to begin
	st.next <- struct{}{}
	<-st.at // the read is made: it shows the pause
	probe, err := gate.Acquire(t.Context())
	require.NoError(t, err)
	require.True(t, probe(limit.Succeeded, 0))
	x.LiftPause(t.Context(), "sys")
	st.next <- struct{}{}
	require.NoError(t, <-errc)
	require.False(t, gate.State().Paused, "the read from before the lift leaves it lifted")
	_, err = gate.Acquire(t.Context())
	require.NoError(t, err)
}

// cancelAfterRead ends a read of the paused systems' context once the read
// is made, when cancel is set: the node shuts down just as it comes back.
type cancelAfterRead struct {
	store.Store
	cancel context.CancelFunc
}

func (s *cancelAfterRead) ListPauses(ctx context.Context) ([]store.SystemPause, error) {
	ps, err := s.Store.ListPauses(ctx)
	if s.cancel != nil {
		s.cancel()
	}
	return ps, err
}

// TestResumeWakesHeldAtShutdown: a read of the store's pauses finds a
// system resumed just as the node shuts down (the read's context ends
// right after it). The runs held for the system are woken all the same:
// the read lifted the pause on the gate, so no later read wakes them, and
// they would wait for their next check, ten minutes for an operator's
// pause.
func TestResumeWakesHeldAtShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: store.OperatorPause, Now: time.Now()})
	require.NoError(t, err)
	st := &cancelAfterRead{Store: b.store}
	x := delivery.New(delivery.Config{Store: st, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond})
	require.NoError(t, x.SyncPauses(t.Context()))
	b.insert(t, "k1", `{"n": 1}`)
	runs := b.runWith(t, x, func(runs []store.Run) bool { return len(runs) == 1 && runs[0].State == store.RunRetrying })
	require.Contains(t, runs[0].LastError, "paused by an operator")
	held := runs[0].DueAt

	ok, err := b.store.ResumeSystem(t.Context(), "sys")
	require.NoError(t, err)
	require.True(t, ok)
	ctx, cancel := context.WithCancel(t.Context())
	st.cancel = cancel
	require.NoError(t, x.SyncPauses(ctx))

	runs, err = b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, store.RunRetrying, runs[0].State)
	require.True(t, runs[0].DueAt.Before(held), "woken: due %s, held until %s", runs[0].DueAt, held)
}

// TestCredentialPauseWakesOperatorHeld: runs were held because an operator
// paused their system (they look again in ten minutes, or when it is
// resumed); then the operator resumed it and another node's 401 paused it
// again, both between two reads here. The read that finds the credential
// pause wakes the held runs: they wait for its probe, a minute away, and
// one of them is that probe, instead of sleeping out the operator's hold
// while nothing probes the system.
func TestCredentialPauseWakesOperatorHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	_, err := b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: store.OperatorPause, Now: time.Now()})
	require.NoError(t, err)
	gates := delivery.NewGates(b.plan, nil)
	newExecutor := func() *delivery.Executor {
		return delivery.New(delivery.Config{Store: b.store, Plan: b.plan, Workers: 1, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond, Gates: gates})
	}
	x := newExecutor()
	require.NoError(t, x.SyncPauses(t.Context()))
	b.insert(t, "k1", `{"n": 1}`)
	runs := b.runWith(t, x, func(runs []store.Run) bool { return len(runs) == 1 && runs[0].State == store.RunRetrying })
	require.Contains(t, runs[0].LastError, "paused by an operator")
	held := runs[0].DueAt

	_, err = b.store.ResumeSystem(t.Context(), "sys")
	require.NoError(t, err)
	_, err = b.store.PauseSystem(t.Context(), store.PauseParams{System: "sys", Reason: "HTTP 401 from sys", Now: time.Now()})
	require.NoError(t, err)
	require.NoError(t, x.SyncPauses(t.Context()))

	runs, err = b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.True(t, runs[0].DueAt.Before(held), "woken: due %s, held until %s", runs[0].DueAt, held)
	b.runWith(t, newExecutor(), func(runs []store.Run) bool {
		return len(runs) == 1 && strings.Contains(runs[0].LastError, "credentials refused")
	}) // held again, until the probe
}
