package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

// fakeAction answers with the func the test gives it and records calls.
type fakeAction struct {
	mu    sync.Mutex // guards calls and spans
	calls []connector.Request
	// spans are the span contexts each call was made in.
	spans []trace.SpanContext
	do    func(n int, req connector.Request) (connector.Result, error)
}

func (f *fakeAction) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.spans = append(f.spans, trace.SpanContextFromContext(ctx))
	n := len(f.calls)
	f.mu.Unlock()
	return f.do(n, req)
}

func (f *fakeAction) Calls() []connector.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]connector.Request(nil), f.calls...)
}

type fakeSystem map[string]*fakeAction

func (s fakeSystem) Action(name string) (connector.Action, bool) {
	a, ok := s[name]
	return a, ok
}

type deadRecorder struct {
	mu   sync.Mutex // guards dead
	dead []delivery.DeadRun
}

func (d *deadRecorder) RunDead(_ context.Context, r delivery.DeadRun) {
	d.mu.Lock()
	d.dead = append(d.dead, r)
	d.mu.Unlock()
}

type bundle struct {
	store store.Store
	plan  *flow.Plan
	sys   fakeSystem
	dead  *deadRecorder
	// reg holds the executor's metrics.
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	// tracer, when set, makes the executor's spans.
	tracer *tracing.Tracer
	// observe, when set, is the executor's Observe.
	observe func(delivery.Report)
}

// setup compiles yaml against a registry holding one fake kind whose
// actions "first" and "second" behave as the test sets them.
func setup(t *testing.T, yaml string) *bundle {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return setupOn(t, yaml, st)
}

// setupOn is setup on the store st.
func setupOn(t *testing.T, yaml string, st store.Store) *bundle {
	t.Helper()
	b := &bundle{sys: fakeSystem{"first": {}, "second": {}}, dead: &deadRecorder{}, reg: prometheus.NewRegistry()}
	b.metrics = metrics.New(b.reg)
	reg := connector.NewRegistry()
	reg.Add(connector.Kind{
		Name: "fake", NewConfig: func() any { return &struct{}{} },
		Open: func(connector.OpenParams) (connector.System, error) { return b.sys, nil },
		Actions: []connector.ActionSpec{
			{Name: "first", Inputs: []connector.Input{{Name: "value"}}},
			{Name: "second", Inputs: []connector.Input{{Name: "value"}}},
		},
	})
	c, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	b.plan, err = flow.Compile(c, reg)
	require.NoError(t, err)
	b.store = st
	return b
}

const twoSteps = `
version: 1
retry: { base: 1ms, cap: 5ms, attempts: 3 }
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, with: { value: .n } }
      - { id: two, do: sys.second, with: { value: '$steps.one.id + 1' } }
`

// oneStep is a flow of one step that sends the payload's n.
const oneStep = `
version: 1
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, with: { value: .n } }
`

func (b *bundle) insert(t *testing.T, key, payload string) store.InsertResult {
	t.Helper()
	now := time.Now()
	res, err := b.store.InsertEvents(t.Context(), []store.NewEvent{{
		ID: store.NewID("evt_", now), Source: "src", Key: key, ReceivedAt: now, Payload: []byte(payload),
		Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "one"}},
	}})
	require.NoError(t, err)
	return res[0]
}

// runUntil runs an executor until every run is finished.
func (b *bundle) runUntil(t *testing.T, done func([]store.Run) bool) []store.Run {
	t.Helper()
	x := delivery.New(delivery.Config{
		Store: b.store, Plan: b.plan, Workers: 4, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, Notifier: b.dead, Metrics: b.metrics, Tracer: b.tracer, Observe: b.observe,
	})
	return b.runWith(t, x, done)
}

// runWith runs x until done reports true of the store's runs.
func (b *bundle) runWith(t *testing.T, x *delivery.Executor, done func([]store.Run) bool) []store.Run {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	var runs []store.Run
	require.Eventually(t, func() bool {
		var err error
		runs, err = b.store.ListRuns(t.Context(), store.ListRunsParams{})
		require.NoError(t, err)
		return done(runs)
	}, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	return runs
}

// waitFinished waits until every run of the store is finished.
func (b *bundle) waitFinished(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
		require.NoError(t, err)
		return allFinished(runs)
	}, 10*time.Second, 5*time.Millisecond)
}

func allFinished(runs []store.Run) bool {
	for _, r := range runs {
		if r.State != store.RunSucceeded && r.State != store.RunDead {
			return false
		}
	}
	return len(runs) > 0
}

func ok(out any) func(int, connector.Request) (connector.Result, error) {
	return func(int, connector.Request) (connector.Result, error) {
		return connector.Result{Output: out, Status: 200}, nil
	}
}

func TestStepsRunInOrderWithOutputs(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = ok(map[string]any{"id": 41})
	b.sys["second"].do = ok("done")
	b.insert(t, "k1", `{"n": 7}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunSucceeded, runs[0].State)
	require.Equal(t, 7.0, toFloat(b.sys["first"].Calls()[0].Input["value"]))
	require.Equal(t, 42.0, toFloat(b.sys["second"].Calls()[0].Input["value"]), "$steps.one.id + 1")
	k1, k2 := b.sys["first"].Calls()[0].IdempotencyKey, b.sys["second"].Calls()[0].IdempotencyKey
	require.NotEqual(t, k1, k2, "each step has its own key")
}

func TestTransientThenSuccessKeepsKey(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = func(n int, _ connector.Request) (connector.Result, error) {
		if n < 3 {
			return connector.Result{Status: 503}, errors.New("503 Service Unavailable")
		}
		return connector.Result{Output: map[string]any{"id": 1}, Status: 200}, nil
	}
	b.sys["second"].do = ok(nil)
	b.insert(t, "k1", `{"n": 1}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunSucceeded, runs[0].State)
	calls := b.sys["first"].Calls()
	require.Len(t, calls, 3)
	require.Equal(t, calls[0].IdempotencyKey, calls[2].IdempotencyKey, "retries carry the same key")
	attempts, err := b.store.ListAttempts(t.Context(), runs[0].ID)
	require.NoError(t, err)
	require.Len(t, attempts, 4)
	require.Equal(t, []int{1, 2, 3, 1}, []int{attempts[0].Number, attempts[1].Number, attempts[2].Number, attempts[3].Number})
	require.Equal(t, store.AttemptRetry, attempts[0].Outcome)
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		first   func(int, connector.Request) (connector.Result, error)
		calls   int
		wantErr string
		step    string
	}{
		{
			name: "permanent error", payload: `{"n": 1}`, calls: 1, step: "one", wantErr: "400 Bad Request",
			first: func(int, connector.Request) (connector.Result, error) {
				return connector.Result{Status: 400}, connector.Permanent(errors.New("400 Bad Request"))
			},
		},
		{
			name: "attempts exhausted", payload: `{"n": 1}`, calls: 3, step: "one", wantErr: "gave up after 3 attempts: 502",
			first: func(int, connector.Request) (connector.Result, error) {
				return connector.Result{Status: 502}, errors.New("502 Bad Gateway")
			},
		},
		{
			name: "mapping error in a later step", payload: `{"n": 1}`, calls: 1, step: "two", wantErr: "cannot add",
			first: ok(map[string]any{"id": "not a number"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, twoSteps)
			b.sys["first"].do = tt.first
			b.sys["second"].do = ok(nil)
			ev := b.insert(t, "k1", tt.payload)
			runs := b.runUntil(t, allFinished)
			require.Equal(t, store.RunDead, runs[0].State)
			require.Contains(t, runs[0].LastError, tt.wantErr)
			require.Equal(t, tt.step, runs[0].StepID)
			require.Len(t, b.sys["first"].Calls(), tt.calls)
			require.Empty(t, b.sys["second"].Calls())
			require.Len(t, b.dead.dead, 1)
			require.Equal(t, ev.EventID, b.dead.dead[0].EventID)
			require.Equal(t, tt.step, b.dead.dead[0].Step)
		})
	}
}

func TestWhenErrorDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, `
version: 1
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    when: .n + 1 > 2
    steps: [ { id: one, do: sys.first } ]
`)
	b.sys["first"].do = ok(nil)
	b.insert(t, "k1", `{"n": "text"}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunDead, runs[0].State)
	require.Contains(t, runs[0].LastError, "when:")
	require.Empty(t, b.sys["first"].Calls())
}

// TestJQTimeoutIsRetried: jq cut off by its time limit (a starved CPU)
// is not a fault of the data: the run is retried with the step's back-off
// like a failed call, and dead-lettered only once its attempts are spent
// (here every attempt times out: the expression is slow for this payload).
// It was dead-lettered at the first timeout.
func TestJQTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	const slow = `(reduce range(1e10) as $i (0; . + 1)) > 0`
	for _, tt := range []struct{ name, flow string }{
		{"when", "when: '" + slow + "'\n    steps: [ { id: one, do: sys.first } ]"},
		{"inputs", "steps: [ { id: one, do: sys.first, with: { value: '" + slow + "' } } ]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, `
version: 1
retry: { base: 1ms, cap: 5ms, attempts: 2 }
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    `+tt.flow+`
`)
			b.sys["first"].do = ok(nil)
			ev := b.insert(t, "k1", `{}`)
			runs := b.runUntil(t, allFinished)
			require.Equal(t, store.RunDead, runs[0].State)
			require.Contains(t, runs[0].LastError, "gave up after 2 attempts")
			require.Contains(t, runs[0].LastError, "took longer than")
			require.Empty(t, b.sys["first"].Calls())
			attempts, err := b.store.ListAttempts(t.Context(), runs[0].ID)
			require.NoError(t, err)
			require.Len(t, attempts, 2)
			require.Equal(t, store.AttemptRetry, attempts[0].Outcome)
			require.Equal(t, store.AttemptDead, attempts[1].Outcome)
			require.Equal(t, "one", attempts[0].StepID)
			require.Len(t, b.dead.dead, 1)
			require.Equal(t, ev.EventID, b.dead.dead[0].EventID)
		})
	}
}

// TestResumesAfterCheckpoint simulates a crash after step one succeeded:
// the next executor starts at step two and never calls step one again.
func TestResumesAfterCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = ok(nil)
	b.sys["second"].do = ok(nil)
	b.insert(t, "k1", `{"n": 1}`)
	now := time.Now()
	claimed, err := store.ClaimRuns(t.Context(), b.store, store.ClaimParams{Token: "dead-node", Now: now, LeaseUntil: now.Add(time.Hour), Limit: 1})
	require.NoError(t, err)
	errs, err := store.FinishAttempts(t.Context(), b.store, []store.FinishParams{{
		RunID: claimed[0].Run.ID, Token: "dead-node", Now: now,
		Attempt: store.Attempt{StepIndex: 0, StepID: "one", Number: 1, Outcome: store.AttemptSucceeded, StartedAt: now},
		Output:  []byte(`{"id": 99}`), State: store.RunRunning, Step: 1, StepID: "two", RunAttempt: 1, DueAt: now.Add(time.Hour),
	}})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	// The node died; on restart (SQLite) its leases are released.
	_, err = b.store.ReleaseLeases(t.Context(), time.Now())
	require.NoError(t, err)

	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunSucceeded, runs[0].State)
	require.Empty(t, b.sys["first"].Calls(), "a checkpointed step is not repeated")
	require.Equal(t, 100.0, toFloat(b.sys["second"].Calls()[0].Input["value"]), "its output is restored")
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case interface{ Float64() (float64, error) }:
		f, _ := v.Float64()
		return f
	}
	return -1
}

// TestFlowChangedUnderRun: a run stopped at a step the edited flow no
// longer has at that position is dead-lettered with a clear reason instead
// of running another step.
func TestFlowChangedUnderRun(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = ok(nil)
	b.sys["second"].do = ok(nil)
	b.insert(t, "k1", `{"n": 1}`)
	now := time.Now()
	claimed, err := store.ClaimRuns(t.Context(), b.store, store.ClaimParams{Token: "old-node", Now: now, LeaseUntil: now.Add(time.Hour), Limit: 1})
	require.NoError(t, err)
	// The old config's step 1 was called "renamed".
	_, err = store.FinishAttempts(t.Context(), b.store, []store.FinishParams{{
		RunID: claimed[0].Run.ID, Token: "old-node", Now: now,
		Attempt: store.Attempt{StepIndex: 0, StepID: "one", Number: 1, Outcome: store.AttemptSucceeded, StartedAt: now},
		Output:  []byte(`{"id": 1}`), State: store.RunRunning, Step: 1, StepID: "renamed", RunAttempt: 1, DueAt: now.Add(time.Hour),
	}})
	require.NoError(t, err)
	_, err = b.store.ReleaseLeases(t.Context(), time.Now())
	require.NoError(t, err)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunDead, runs[0].State)
	require.Contains(t, runs[0].LastError, "changed since this run started")
	require.Empty(t, b.sys["second"].Calls(), "no other step runs in its place")
}

// TestWorkersBoundCalls: however the claims and results interleave, no
// more than Workers calls are in flight at once. (A claim covers the
// workers its transaction's results free, so for a moment more runs than
// workers are held; the loop must then wait, not claim again.)
func TestWorkersBoundCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	var mu sync.Mutex
	inFlight, most := 0, 0
	slow := func(out any) func(int, connector.Request) (connector.Result, error) {
		return func(int, connector.Request) (connector.Result, error) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inFlight--
			mu.Unlock()
			return connector.Result{Output: out, Status: 200}, nil
		}
	}
	b.sys["first"].do = slow(map[string]any{"id": 1})
	b.sys["second"].do = slow("done")
	// A worker whose run ended lingers after its result is committed (as
	// it logs and counts), while the claim made with that commit already
	// covers it: the loop must not see the overshoot as room to claim.
	b.observe = func(r delivery.Report) {
		if r.Done {
			time.Sleep(3 * time.Millisecond)
		}
	}
	const events = 80 // under ListRuns' default page, which runUntil reads
	for i := range events {
		b.insert(t, fmt.Sprint("k", i), `{"n": 1}`)
	}
	runs := b.runUntil(t, allFinished)
	require.Len(t, runs, events)
	succeeded := 0
	for _, r := range runs {
		if r.State == store.RunSucceeded {
			succeeded++
		}
	}
	require.Equal(t, events, succeeded)
	require.LessOrEqual(t, most, 4, "calls in flight at once, with 4 workers")
	require.Len(t, b.sys["first"].Calls(), events, "each run's first step called once")
}

// hangingStore blocks FinishAndClaim, once hang is set, until its context
// ends: a database that stopped answering.
type hangingStore struct {
	delivery.Store
	hang    atomic.Bool
	blocked chan struct{}
}

func (h *hangingStore) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	if h.hang.Load() {
		select {
		case h.blocked <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	return h.Store.FinishAndClaim(ctx, ps, c)
}

// TestShutdownWithHungStore: a claim waiting on a store that never answers
// holds shutdown for the grace period, not for ever.
func TestShutdownWithHungStore(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	st := &hangingStore{Store: b.store, blocked: make(chan struct{}, 1)}
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 4, Lease: 5 * time.Second,
		PollInterval: 5 * time.Millisecond, Grace: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	st.hang.Store(true)
	select {
	case <-st.blocked: // the claim loop waits on the hung store
	case <-time.After(10 * time.Second):
		t.Fatal("no claim reached the store")
	}
	cancel()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5 s after shutdown began (grace 100 ms)")
	}
}

// hungRenewals hangs the first ExtendLeases until its context ends (a
// database that stopped answering on that connection) and counts calls.
type hungRenewals struct {
	delivery.Store
	calls atomic.Int32
}

func (h *hungRenewals) ExtendLeases(ctx context.Context, p store.ExtendParams) error {
	if h.calls.Add(1) == 1 {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Store.ExtendLeases(ctx, p)
}

// TestRenewalOutlivesHungCall: a lease renewal that hangs is cut off, and
// renewals go on; otherwise the leases of every run in flight would lapse
// and other nodes would run them again.
func TestRenewalOutlivesHungCall(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	release := make(chan struct{})
	b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
		<-release // a slow step, whose lease must be renewed
		return connector.Result{Output: map[string]any{"id": 1}, Status: 200}, nil
	}
	b.sys["second"].do = ok(map[string]any{})
	b.insert(t, "e1", `{"n":1}`)
	st := &hungRenewals{Store: b.store}
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 2, Lease: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		Grace: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	require.Eventually(t, func() bool { return st.calls.Load() >= 3 }, 10*time.Second, time.Millisecond,
		"renewals stopped after a hung one")
	close(release)
	b.waitFinished(t)
	cancel()
	require.NoError(t, <-errc)
}

// poisonStore makes the database refuse the successful result of one run
// (a state its CHECK constraint does not allow), and holds the first
// commit holding a result until release.
type poisonStore struct {
	delivery.Store
	poison        atomic.Value // the run ID
	first         sync.Once
	held, release chan struct{}
}

func (p *poisonStore) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	if len(ps) > 0 {
		p.first.Do(func() { close(p.held); <-p.release })
	}
	ps = slices.Clone(ps)
	for i := range ps {
		if ps[i].RunID == p.poison.Load() && ps[i].State == store.RunSucceeded {
			ps[i].State = "bogus" // the result; its dead letter passes
		}
	}
	return p.Store.FinishAndClaim(ctx, ps, c)
}

// TestRefusedResultFailsAlone: a result the database refuses fails alone;
// the results that shared its commit are stored at once, not failed with
// it and retried (as they would be every time they met it). The refused
// run is dead-lettered with the database's reason and the notifier told:
// left leased, it would call its system again at every lease expiry.
func TestRefusedResultFailsAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, oneStep)
	st := &poisonStore{Store: b.store, held: make(chan struct{}), release: make(chan struct{})}
	// The runs of "late" and "poison" answer once the first commit is held,
	// so their results queue together behind it.
	b.sys["first"].do = func(_ int, req connector.Request) (connector.Result, error) {
		if v := req.Input["value"]; v == "late" || v == "poison" {
			<-st.held
		}
		return connector.Result{Output: map[string]any{}, Status: 200}, nil
	}
	for _, n := range []string{"a", "b", "late", "poison"} {
		b.insert(t, n, fmt.Sprintf(`{"n":%q}`, n))
	}
	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	byKey := map[string]string{} // payload n → run ID
	for _, r := range runs {
		ev, err := b.store.GetEvent(t.Context(), r.EventID)
		require.NoError(t, err)
		byKey[ev.Key] = r.ID
	}
	st.poison.Store(byKey["poison"])

	logs := &logtest.Buffer{}
	x := delivery.New(delivery.Config{
		Store: st, Plan: b.plan, Workers: 4, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond,
		Grace: 100 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Notifier: b.dead,
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	<-st.held
	// "late" and "poison" wait behind the held commit (with "a" or "b",
	// whichever it does not hold).
	require.Eventually(t, func() bool { return x.Pending() >= 2 }, 10*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // let the other result, if free, queue too
	close(st.release)

	require.Eventually(t, func() bool {
		n := 0
		for _, k := range []string{"a", "b", "late"} {
			if r, err := b.store.GetRun(t.Context(), byKey[k]); err == nil && r.State == store.RunSucceeded {
				n++
			}
		}
		r, err := b.store.GetRun(t.Context(), byKey["poison"])
		return n == 3 && err == nil && r.State == store.RunDead
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-errc)

	r, err := b.store.GetRun(t.Context(), byKey["poison"])
	require.NoError(t, err)
	require.Contains(t, r.LastError, `the database refused the result of attempt 1 of step "one"`)
	require.Contains(t, r.LastError, "CHECK constraint failed")
	attempts, err := b.store.ListAttempts(t.Context(), byKey["poison"])
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.Equal(t, store.AttemptDead, attempts[0].Outcome)
	require.Len(t, b.dead.dead, 1, "the dead letter is notified")
	require.Equal(t, byKey["poison"], b.dead.dead[0].RunID)

	refused := 0
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec["level"] == "INFO" || rec["run_id"] == nil {
			continue // attempts; the end of the grace period
		}
		require.Equal(t, byKey["poison"], rec["run_id"], "only the poison's result fails: %s", line)
		if strings.Contains(line, "CHECK constraint failed") {
			refused++
		}
	}
	require.Positive(t, refused, "the poison's result is refused with the database's reason")
	require.Len(t, b.sys["first"].Calls(), 4, "each run called once")
}

// lateFailure applies the first commit holding a result and then reports
// it failed: a commit cut off by the timeout (or a lost connection) after
// the database had committed it.
type lateFailure struct {
	delivery.Store
	once sync.Once
}

func (l *lateFailure) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	errs, claimed, err := l.Store.FinishAndClaim(ctx, ps, c)
	failed := false
	if err == nil && len(ps) > 0 {
		l.once.Do(func() { failed = true })
	}
	if failed {
		return nil, nil, context.DeadlineExceeded
	}
	return errs, claimed, err
}

// TestResultAppliedDespiteError: a commit reported failed that had in fact
// applied is recognised before the retry: the attempt is recorded once and
// the dead letter is notified, instead of the retry finding the lease gone
// and dropping the run's end as a lease lost to another worker.
func TestResultAppliedDespiteError(t *testing.T) {
	t.Parallel()
	b := setup(t, twoSteps)
	b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
		return connector.Result{Status: 400}, connector.Permanent(errors.New("400 Bad Request: no such customer"))
	}
	b.insert(t, "e1", `{"n":1}`)
	logs := &logtest.Buffer{}
	x := delivery.New(delivery.Config{
		Store: &lateFailure{Store: b.store}, Plan: b.plan, Workers: 2, Lease: 5 * time.Second, PollInterval: 5 * time.Millisecond,
		Notifier: b.dead, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- x.Run(ctx) }()
	require.Eventually(t, func() bool {
		b.dead.mu.Lock()
		defer b.dead.mu.Unlock()
		return len(b.dead.dead) > 0
	}, 10*time.Second, 5*time.Millisecond, "no dead letter notified; logs: %s", logs)
	cancel()
	require.NoError(t, <-errc)

	runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, store.RunDead, runs[0].State)
	attempts, err := b.store.ListAttempts(t.Context(), runs[0].ID)
	require.NoError(t, err)
	require.Len(t, attempts, 1, "the attempt is recorded once")
	require.NotContains(t, logs.String(), "lease lost")
	require.Contains(t, logs.String(), "attempt result not stored; retrying", "the failure was seen")
}
