package delivery_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// stores open each store implementation for a test.
var stores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"sqlite", func(t *testing.T) store.Store {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"postgres", func(t *testing.T) store.Store {
		st, err := postgres.Open(t.Context(), storetest.PostgresDSN(t), postgres.Options{Migrate: true})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// past is what became of one claim of a run before the test's executor
// starts.
type past string

const (
	// lost: claimed by a node that died (nothing recorded); its lease
	// expired.
	lost past = "lost"
	// failed: the call failed transiently; the retry was recorded.
	failed past = "failed"
	// held: put back untried (a rate limit, a shutdown hand-back).
	held past = "held"
	// died: the run was dead-lettered, then `retry` put it back.
	died past = "died and retried"
)

// deadNodeLease is the lease of the claims in a run's history.
const deadNodeLease = 30 * time.Second

// live goes through history with runID, as the nodes before the test's
// executor did, from start on a clock of its own; it returns the clock's
// time when they are done.
func live(t *testing.T, st store.Store, runID string, history []past, start time.Time) time.Time {
	t.Helper()
	ctx := t.Context()
	now := start
	for i, h := range history {
		token := fmt.Sprint("gone-", i)
		claimed, err := store.ClaimRuns(ctx, st, store.ClaimParams{Token: token, Now: now, LeaseUntil: now.Add(deadNodeLease), Limit: 1})
		require.NoError(t, err)
		require.Len(t, claimed, 1, "claim %d (%s)", i, h)
		r := claimed[0].Run
		require.Equal(t, runID, r.ID)
		p := store.FinishParams{
			RunID: r.ID, Token: token, Now: now,
			Attempt: store.Attempt{RunID: r.ID, StepID: "one", System: "sys", Number: r.Attempt, StartedAt: now},
			Step:    0, StepID: "one", DueAt: now,
		}
		switch h {
		case lost:
			now = now.Add(deadNodeLease + time.Second)
			continue
		case failed:
			p.Attempt.Outcome, p.Attempt.Error = store.AttemptRetry, "503 Service Unavailable"
			p.State, p.RunAttempt, p.LastError = store.RunRetrying, r.Attempt, "503 Service Unavailable"
		case held:
			p.Hold, p.HeldFor = true, "sys"
			p.State, p.RunAttempt, p.LastError = store.RunRetrying, r.Attempt-1, "rate limit"
		case died:
			p.Attempt.Outcome, p.Attempt.Error = store.AttemptDead, "400 Bad Request"
			p.State, p.RunAttempt, p.LastError = store.RunDead, r.Attempt, "400 Bad Request"
		}
		res, err := store.FinishAttempts(ctx, st, []store.FinishParams{p})
		require.NoError(t, err)
		require.NoError(t, res[0])
		if h == died {
			_, err := st.RetryRun(ctx, store.RetryParams{RunID: r.ID, Now: now})
			require.NoError(t, err)
		}
		now = now.Add(time.Second)
	}
	return now
}

// TestLostAttempts: attempts lost with their worker (claimed, then nothing
// recorded until the lease expired) count against the step's attempt
// limit, so a run whose holders keep dying (a poison run that kills every
// node that executes it) is dead-lettered, without being called, once the
// limit's worth of attempts were started; and only then.
func TestLostAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   int
		history []past
		// calls is how many calls the executor makes (each succeeds).
		calls int
		// wantErr, when set, is in the dead run's last error; when empty
		// the run must succeed.
		wantErr []string
		// number is the dead record's attempt number.
		number int
	}{
		{
			name: "lost up to the limit", limit: 3, history: []past{lost, lost, lost},
			wantErr: []string{"attempt 3 of 3 was lost with its worker", "not tried again"}, number: 3,
		},
		{
			name: "failed, then the last one lost", limit: 3, history: []past{failed, failed, lost},
			wantErr: []string{"attempt 3 of 3 was lost with its worker"}, number: 3,
		},
		{name: "lost within the limit", limit: 3, history: []past{lost, lost}, calls: 1},
		{name: "holds are not attempts", limit: 2, history: []past{held, lost, held, held}, calls: 1},
		{
			// The limit was 8 when these happened.
			name: "lost, then the limit lowered", limit: 2, history: []past{failed, lost, failed},
			wantErr: []string{"attempt 2 was lost with its worker", "3 attempts have been started", "now allows 2"}, number: 2,
		},
		{
			// Scheduled retries are not cut short: the run gets the
			// attempt it was claimed for, as before.
			name: "limit lowered, nothing lost", limit: 2, history: []past{failed, failed, failed}, calls: 1,
		},
		{
			// Records from before `retry` (numbered from 1 too) do not
			// stand for the lost attempt 1 after it.
			name: "retry starts a new count", limit: 2, history: []past{failed, died, lost, failed, failed},
			wantErr: []string{"attempt 1 was lost with its worker", "3 attempts have been started"}, number: 1,
		},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					b := setupOn(t, fmt.Sprintf(`
version: 1
retry: { base: 1ms, cap: 5ms, attempts: %d }
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, with: { value: .n } }
`, tt.limit), s.open(t))
					b.sys["first"].do = ok(map[string]any{"id": 1})
					ev := b.insert(t, "k", `{"n": 1}`)
					runs, err := b.store.ListRuns(t.Context(), store.ListRunsParams{EventID: ev.EventID})
					require.NoError(t, err)
					require.Len(t, runs, 1)
					runID := runs[0].ID
					end := live(t, b.store, runID, tt.history, time.Now())

					started := time.Now()
					x := delivery.New(delivery.Config{
						Store: b.store, Plan: b.plan, Workers: 2, Lease: 5 * time.Second,
						PollInterval: 5 * time.Millisecond, Notifier: b.dead, Metrics: b.metrics,
						NowFunc: func() time.Time { return end.Add(time.Since(started)) },
					})
					runs = b.runWith(t, x, allFinished)
					r := runs[0]
					require.Len(t, b.sys["first"].Calls(), tt.calls)
					if len(tt.wantErr) == 0 {
						require.Equal(t, store.RunSucceeded, r.State, r.LastError)
						require.Empty(t, b.dead.dead)
						return
					}
					require.Equal(t, store.RunDead, r.State)
					for _, want := range tt.wantErr {
						require.Contains(t, r.LastError, want)
					}
					attempts, err := b.store.ListAttempts(t.Context(), runID)
					require.NoError(t, err)
					last := attempts[len(attempts)-1]
					require.Equal(t, store.AttemptDead, last.Outcome)
					require.Equal(t, tt.number, last.Number)
					require.Equal(t, r.LastError, last.Error)
					require.Len(t, b.dead.dead, 1, "alerted")
					require.Equal(t, tt.number, b.dead.dead[0].Attempts)
					require.Equal(t, "one", b.dead.dead[0].Step)
					require.InDelta(t, 1, b.series(t)[`switchboard_runs_total{flow="f",state="dead"}`], 0)
				})
			}
		})
	}
}
