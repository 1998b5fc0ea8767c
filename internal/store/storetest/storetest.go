// Package storetest is the conformance suite every store.Store passes. Each
// implementation's tests call Run with a function that opens a fresh, empty
// store; every behaviour change lands here first.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// OpenFunc returns a fresh, empty store, closed by the test's cleanup.
type OpenFunc func(t testing.TB) store.Store

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type bundle struct {
	s   store.Store
	ctx context.Context
}

// Run runs the whole suite.
func Run(t *testing.T, open OpenFunc) {
	setup := func(t *testing.T) bundle {
		t.Helper()
		return bundle{s: open(t), ctx: t.Context()}
	}

	t.Run("InsertAndDedupe", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{
			newEvent("src", "k1", "flow_a", "flow_b"),
			newEvent("src", "k2", "flow_a"),
			newEvent("src", "k1", "flow_a"), // same key in the same batch
			newEvent("other", "k1", "flow_a"),
		})
		require.NoError(t, err)
		require.Len(t, res, 4)
		require.False(t, res[0].Duplicate)
		require.False(t, res[1].Duplicate)
		require.True(t, res[2].Duplicate)
		require.Equal(t, res[0].EventID, res[2].EventID)
		require.False(t, res[3].Duplicate, "keys are scoped by source")

		res2, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k2", "flow_a")})
		require.NoError(t, err)
		require.True(t, res2[0].Duplicate)
		require.Equal(t, res[1].EventID, res2[0].EventID)

		runs, err := b.s.ListRuns(b.ctx, store.ListRunsParams{EventID: res[0].EventID})
		require.NoError(t, err)
		require.Len(t, runs, 2)
		all, err := b.s.ListRuns(b.ctx, store.ListRunsParams{Limit: 100})
		require.NoError(t, err)
		require.Len(t, all, 4, "duplicates create no runs")

		ev, err := b.s.GetEvent(b.ctx, res[0].EventID)
		require.NoError(t, err)
		require.Equal(t, "src", ev.Source)
		require.JSONEq(t, `{"key":"k1"}`, string(ev.Payload))
		require.True(t, ev.ReceivedAt.Equal(t0))
	})

	t.Run("TraceParent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		traced := newEvent("src", "k1", "flow_a")
		traced.TraceParent = parent
		dup := newEvent("src", "k1", "flow_a")
		dup.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{traced, newEvent("src", "k2", "flow_a"), dup})
		require.NoError(t, err)
		require.True(t, res[2].Duplicate)

		ev, err := b.s.GetEvent(b.ctx, res[0].EventID)
		require.NoError(t, err)
		require.Equal(t, parent, ev.TraceParent, "the first event's traceparent is kept; a duplicate's is not stored")
		ev, err = b.s.GetEvent(b.ctx, res[1].EventID)
		require.NoError(t, err)
		require.Empty(t, ev.TraceParent, "untraced events store none")

		claimed, err := store.ClaimRuns(b.ctx, b.s, claim("tok", t0, 10))
		require.NoError(t, err)
		require.Len(t, claimed, 2)
		byEvent := map[string]string{}
		for _, c := range claimed {
			byEvent[c.Event.ID] = c.Event.TraceParent
		}
		require.Equal(t, map[string]string{res[0].EventID: parent, res[1].EventID: ""}, byEvent,
			"a claimed run carries its event's traceparent")
	})

	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		results := make([]store.InsertResult, 50)
		errs := make([]error, 50)
		for i := range 50 {
			wg.Go(func() {
				res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "same", "flow_a")})
				errs[i] = err
				if err == nil {
					results[i] = res[0]
				}
			})
		}
		wg.Wait()
		fresh := 0
		for i := range 50 {
			require.NoError(t, errs[i])
			if !results[i].Duplicate {
				fresh++
			}
			require.Equal(t, results[0].EventID, results[i].EventID)
		}
		require.Equal(t, 1, fresh)
		runs, err := b.s.ListRuns(b.ctx, store.ListRunsParams{})
		require.NoError(t, err)
		require.Len(t, runs, 1)
	})

	t.Run("ClaimLeaseAndFinish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k1", "flow_a")})
		require.NoError(t, err)

		none, err := store.ClaimRuns(b.ctx, b.s, claim("early", t0.Add(-time.Second), 10))
		require.NoError(t, err)
		require.Empty(t, none, "not due before it was received")

		got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0, 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
		c := got[0]
		require.Equal(t, store.RunRunning, c.Run.State)
		require.Equal(t, 1, c.Run.Attempt)
		require.Equal(t, "step1", c.Run.StepID)
		require.Equal(t, "k1", c.Event.Key)
		require.JSONEq(t, `{"key":"k1"}`, string(c.Event.Payload))

		again, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(time.Second), 10))
		require.NoError(t, err)
		require.Empty(t, again, "a held lease is not claimable")

		// Step 0 succeeds; the worker goes on to step 1 under the same lease.
		errs, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: c.Run.ID, Token: "w1", Now: t0.Add(time.Second),
			Attempt: attempt(0, "step1", store.AttemptSucceeded),
			Output:  []byte(`{"id":7}`),
			State:   store.RunRunning, Step: 1, StepID: "step2", RunAttempt: 1, DueAt: t0.Add(31 * time.Second),
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])

		// The worker dies; after the lease expires another worker takes over
		// at step 1 with step 0's checkpoint.
		got, err = store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(40*time.Second), 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, 1, got[0].Run.Step)
		require.Equal(t, 2, got[0].Run.Attempt, "the lost attempt counts")
		require.Equal(t, []store.StepOutput{{Index: 0, StepID: "step1", Output: []byte(`{"id":7}`)}}, got[0].Outputs)

		// The old holder's late result is refused but its attempt is recorded.
		errs, err = store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: c.Run.ID, Token: "w1", Now: t0.Add(41 * time.Second),
			Attempt: attempt(1, "step2", store.AttemptSucceeded),
			State:   store.RunSucceeded, Step: 2,
		}})
		require.NoError(t, err)
		require.ErrorIs(t, errs[0], store.ErrLeaseLost)

		errs, err = store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: c.Run.ID, Token: "w2", Now: t0.Add(42 * time.Second),
			Attempt: attempt(1, "step2", store.AttemptSucceeded), Output: []byte(`"ok"`),
			State: store.RunSucceeded, Step: 2, StepID: "", DueAt: t0.Add(42 * time.Second),
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])

		run, err := b.s.GetRun(b.ctx, c.Run.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, run.State)
		require.Equal(t, "src", run.Source)
		attempts, err := b.s.ListAttempts(b.ctx, c.Run.ID)
		require.NoError(t, err)
		require.Len(t, attempts, 3)
		require.Equal(t, 200, attempts[0].Status)
		require.Equal(t, 1500*time.Millisecond, attempts[0].Duration)
		outs, err := b.s.ListOutputs(b.ctx, c.Run.ID)
		require.NoError(t, err)
		require.Len(t, outs, 2)

		later, err := store.ClaimRuns(b.ctx, b.s, claim("w3", t0.Add(time.Hour), 10))
		require.NoError(t, err)
		require.Empty(t, later, "finished runs are never claimed")
	})

	t.Run("FinishAndClaim", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first := b.insertAndClaim(t, 2, 1)
		done := first[0].Run.ID

		// The finish of one run and the claim of the other in one call; a
		// stale token's result is refused without failing the rest.
		c := claim("w2", t0.Add(time.Second), 10)
		errs, got, err := b.s.FinishAndClaim(b.ctx, []store.FinishParams{{
			RunID: done, Token: "w1", Now: t0.Add(time.Second),
			Attempt: attempt(0, "step1", store.AttemptRetry), LastError: "503",
			State: store.RunRetrying, Step: 0, StepID: "step1", RunAttempt: 1, DueAt: t0.Add(time.Second),
		}, {
			RunID: done, Token: "stale", Now: t0.Add(time.Second),
			Attempt: attempt(0, "step1", store.AttemptSucceeded), State: store.RunSucceeded, Step: 1,
		}}, &c)
		require.NoError(t, err)
		require.Len(t, errs, 2)
		require.NoError(t, errs[0])
		require.ErrorIs(t, errs[1], store.ErrLeaseLost)
		require.Len(t, got, 2, "the run finished as due now is claimable in the same transaction, with the other")
		for _, g := range got {
			require.Equal(t, store.RunRunning, g.Run.State)
			if g.Run.ID == done {
				require.Equal(t, 2, g.Run.Attempt)
				require.Equal(t, "503", g.Run.LastError)
			}
		}
		attempts, err := b.s.ListAttempts(b.ctx, done)
		require.NoError(t, err)
		require.Len(t, attempts, 2, "both results recorded their attempt")

		// A claim for no runs claims none (no default limit).
		c = claim("w3", t0.Add(2*time.Second), 0)
		_, none, err := b.s.FinishAndClaim(b.ctx, nil, &c)
		require.NoError(t, err)
		require.Empty(t, none)
		none, err = store.ClaimRuns(b.ctx, b.s, claim("w3", t0.Add(time.Hour), -1))
		require.NoError(t, err)
		require.Empty(t, none)

		// A finish alone, and a claim that finds nothing.
		c = claim("w3", t0.Add(2*time.Second), 10)
		errs, none, err = b.s.FinishAndClaim(b.ctx, nil, &c)
		require.NoError(t, err)
		require.Empty(t, errs)
		require.Empty(t, none, "both runs are leased")
		errs, none, err = b.s.FinishAndClaim(b.ctx, []store.FinishParams{{
			RunID: got[0].Run.ID, Token: "w2", Now: t0.Add(2 * time.Second),
			Attempt: attempt(0, "step1", store.AttemptSucceeded), State: store.RunSucceeded, Step: 1,
		}}, nil)
		require.NoError(t, err)
		require.Equal(t, []error{nil}, errs)
		require.Nil(t, none, "no claim asked for")
		run, err := b.s.GetRun(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, run.State)
	})

	t.Run("FinishStampsItsTime", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got := b.insertAndClaim(t, 1, 1)
		// The executor recognises a result whose commit was reported failed
		// but applied by the run's updated_at: exactly the result's Now, to
		// the microsecond, whatever its nanoseconds.
		now := t0.Add(1500*time.Millisecond + 123456789*time.Nanosecond)
		_, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: got[0].Run.ID, Token: "w1", Now: now, Attempt: attempt(0, "step1", store.AttemptSucceeded),
			State: store.RunSucceeded, Step: 1,
		}})
		require.NoError(t, err)
		run, err := b.s.GetRun(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.True(t, run.UpdatedAt.Equal(now.Truncate(time.Microsecond)), "updated_at %v, finished at %v", run.UpdatedAt, now)
	})

	t.Run("FinishWithUnstorableText", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got := b.insertAndClaim(t, 2, 2)
		// An error text with a NUL byte and invalid UTF-8 (a downstream's
		// words, quoted): PostgreSQL's text refuses both. It must not fail
		// the batch, or every batch the result joins, and the other run's
		// result with it.
		bad := "upstream said \x00 \xff\xfe here"
		ps := []store.FinishParams{}
		for _, c := range got {
			a := attempt(0, "step1", store.AttemptRetry)
			a.Error = bad
			ps = append(ps, store.FinishParams{RunID: c.Run.ID, Token: "w1", Now: t0, Attempt: a, LastError: bad,
				State: store.RunRetrying, Step: 0, StepID: "step1", RunAttempt: 1, DueAt: t0.Add(time.Second)})
		}
		errs, err := store.FinishAttempts(b.ctx, b.s, ps)
		require.NoError(t, err)
		require.Equal(t, []error{nil, nil}, errs)
		run, err := b.s.GetRun(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRetrying, run.State)
		require.Contains(t, run.LastError, "upstream said")
		require.True(t, utf8.ValidString(run.LastError))
		require.NotContains(t, run.LastError, "\x00")
		attempts, err := b.s.ListAttempts(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Len(t, attempts, 1)
		require.Contains(t, attempts[0].Error, "here")
	})

	t.Run("RefusedValues", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// A value the database refuses (here an outcome its CHECK does not
		// allow) fails the batch with ErrRefused, which tells the group
		// commit to retry the batch's items one at a time; nothing of the
		// batch is stored.
		good, bad := newEvent("src", "good", "flow_a"), newEvent("src", "bad", "flow_a")
		bad.Lineage = store.Lineage{Outcome: "bogus", Hop: 1, Chain: "x", ParentRun: "run_x"}
		_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{good, bad})
		require.ErrorIs(t, err, store.ErrRefused)
		res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{good})
		require.NoError(t, err)
		require.False(t, res[0].Duplicate, "the refused batch stored nothing")

		got := b.insertAndClaim(t, 2, 2)
		ps := []store.FinishParams{}
		for _, c := range got {
			ps = append(ps, store.FinishParams{RunID: c.Run.ID, Token: "w1", Now: t0, Attempt: attempt(0, "step1", store.AttemptSucceeded),
				State: store.RunSucceeded, Step: 1})
		}
		ps[1].State = "bogus"
		_, _, err = b.s.FinishAndClaim(b.ctx, ps, nil)
		require.ErrorIs(t, err, store.ErrRefused)
		run, err := b.s.GetRun(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, run.State, "the refused batch changed nothing")

		// A failure that is not about the values is not marked: a batch
		// is split only for a value the database refuses.
		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		_, err = b.s.InsertEvents(ctx, []store.NewEvent{newEvent("src", "late", "flow_a")})
		require.Error(t, err)
		require.NotErrorIs(t, err, store.ErrRefused)
	})

	t.Run("ExtendLease", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got := b.insertAndClaim(t, 1, 1)
		require.NoError(t, b.s.ExtendLeases(b.ctx, store.ExtendParams{
			Token: "w1", RunIDs: []string{got[0].Run.ID}, LeaseUntil: t0.Add(90 * time.Second), Now: t0.Add(20 * time.Second),
		}))
		none, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(60*time.Second), 10))
		require.NoError(t, err)
		require.Empty(t, none, "extended lease still held")
		// A stranger's token extends nothing.
		require.NoError(t, b.s.ExtendLeases(b.ctx, store.ExtendParams{
			Token: "w9", RunIDs: []string{got[0].Run.ID}, LeaseUntil: t0.Add(time.Hour), Now: t0.Add(20 * time.Second),
		}))
		taken, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(91*time.Second), 10))
		require.NoError(t, err)
		require.Len(t, taken, 1)
	})

	t.Run("RetryingAndDead", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k1", "flow_a")})
		require.NoError(t, err)
		got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0, 10))
		require.NoError(t, err)
		id := got[0].Run.ID
		errs, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: id, Token: "w1", Now: t0, Attempt: attempt(0, "step1", store.AttemptRetry),
			State: store.RunRetrying, Step: 0, StepID: "step1", RunAttempt: 1, DueAt: t0.Add(5 * time.Second),
			LastError: "503 Service Unavailable",
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		none, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(4*time.Second), 10))
		require.NoError(t, err)
		require.Empty(t, none, "not due yet")
		got, err = store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(5*time.Second), 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, 2, got[0].Run.Attempt)
		require.Equal(t, "503 Service Unavailable", got[0].Run.LastError)

		_, err = b.s.RetryRun(b.ctx, store.RetryParams{RunID: id, Now: t0})
		require.ErrorIs(t, err, store.ErrConflict, "only dead runs are retried")

		errs, err = store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: id, Token: "w2", Now: t0.Add(5 * time.Second), Attempt: attempt(0, "step1", store.AttemptDead),
			State: store.RunDead, Step: 0, StepID: "step1", RunAttempt: 2, DueAt: t0.Add(5 * time.Second),
			LastError: "400 Bad Request",
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		dead, err := b.s.ListRuns(b.ctx, store.ListRunsParams{State: store.RunDead})
		require.NoError(t, err)
		require.Len(t, dead, 1)
		require.Equal(t, "400 Bad Request", dead[0].LastError)
		require.Equal(t, "step1", dead[0].StepID)

		run, err := b.s.RetryRun(b.ctx, store.RetryParams{RunID: id, Now: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, store.RunPending, run.State)
		require.Equal(t, 0, run.Attempt)
		got, err = store.ClaimRuns(b.ctx, b.s, claim("w3", t0.Add(time.Minute), 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, 1, got[0].Run.Attempt)

		_, err = b.s.RetryRun(b.ctx, store.RetryParams{RunID: "run_missing", Now: t0})
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Replay", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k1", "flow_a")})
		require.NoError(t, err)
		for gen := 1; gen <= 2; gen++ {
			runs, err := b.s.ReplayEvent(b.ctx, store.ReplayParams{
				EventID: res[0].EventID, Now: t0.Add(time.Minute),
				Runs: []store.NewRun{{ID: store.NewID("run_", t0), Flow: "flow_a", StepID: "step1"}},
			})
			require.NoError(t, err)
			require.Len(t, runs, 1)
			require.Equal(t, gen, runs[0].Generation)
			require.Equal(t, store.RunPending, runs[0].State)
		}
		_, err = b.s.ReplayEvent(b.ctx, store.ReplayParams{EventID: "evt_missing", Now: t0,
			Runs: []store.NewRun{{ID: store.NewID("run_", t0), Flow: "flow_a"}}})
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Hold", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got := b.insertAndClaim(t, 1, 1)
		errs, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: got[0].Run.ID, Token: "w1", Now: t0, Hold: true, HeldFor: "crm",
			Attempt: store.Attempt{StepID: "step1"},
			State:   store.RunRetrying, Step: 0, StepID: "step1", RunAttempt: 0, DueAt: t0.Add(time.Minute),
			LastError: "system crm: circuit open",
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		attempts, err := b.s.ListAttempts(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Empty(t, attempts, "a held run was not tried")
		n, err := b.s.WakeHeld(b.ctx, "sms", t0)
		require.NoError(t, err)
		require.Zero(t, n, "held for another system")
		none, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(time.Second), 10))
		require.NoError(t, err)
		require.Empty(t, none, "still held")
		n, err = b.s.WakeHeld(b.ctx, "crm", t0.Add(2*time.Second))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		again, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(2*time.Second), 10))
		require.NoError(t, err)
		require.Len(t, again, 1)
		require.Equal(t, 1, again[0].Run.Attempt, "the hold gave its attempt back")
	})

	t.Run("ReleaseLeases", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k1", "flow_a")})
		require.NoError(t, err)
		_, err = store.ClaimRuns(b.ctx, b.s, claim("w1", t0, 10))
		require.NoError(t, err)
		n, err := b.s.ReleaseLeases(b.ctx, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(time.Second), 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
	})

	t.Run("ClaimLimitAndOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var evs []store.NewEvent
		for i := range 10 {
			e := newEvent("src", fmt.Sprintf("k%d", i), "flow_a")
			e.ReceivedAt = t0.Add(time.Duration(i) * time.Millisecond)
			evs = append(evs, e)
		}
		_, err := b.s.InsertEvents(b.ctx, evs)
		require.NoError(t, err)
		first, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0.Add(time.Second), 4))
		require.NoError(t, err)
		require.Len(t, first, 4)
		require.Equal(t, "k0", first[0].Event.Key, "oldest due first")
		rest, err := store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(time.Second), 100))
		require.NoError(t, err)
		require.Len(t, rest, 6)
		seen := map[string]bool{}
		for _, c := range append(first, rest...) {
			require.False(t, seen[c.Run.ID], "claimed twice")
			seen[c.Run.ID] = true
		}
	})

	t.Run("NextDue", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, ok, err := b.s.NextDue(b.ctx)
		require.NoError(t, err)
		require.False(t, ok, "empty queue")
		e := newEvent("src", "k1", "flow_a")
		e.ReceivedAt = t0.Add(time.Minute)
		_, err = b.s.InsertEvents(b.ctx, []store.NewEvent{e, newEvent("src", "k2", "flow_a")})
		require.NoError(t, err)
		due, ok, err := b.s.NextDue(b.ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, due.Equal(t0), "earliest first: %s", due)
		got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0.Add(time.Minute), 10))
		require.NoError(t, err)
		require.Len(t, got, 2)
		due, ok, err = b.s.NextDue(b.ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, due.Equal(t0.Add(time.Minute+30*time.Second)), "running runs are due when their lease expires: %s", due)
	})

	t.Run("Leases", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		lease := func(holder string, now time.Time) bool {
			t.Helper()
			ok, err := b.s.AcquireLease(b.ctx, store.LeaseParams{Name: "retention", Holder: holder, Now: now, Until: now.Add(10 * time.Second)})
			require.NoError(t, err)
			return ok
		}
		require.True(t, lease("a", t0))
		require.False(t, lease("b", t0.Add(time.Second)), "held by a")
		require.True(t, lease("a", t0.Add(5*time.Second)), "a renews")
		require.False(t, lease("b", t0.Add(14*time.Second)), "renewal moved the expiry")
		require.True(t, lease("b", t0.Add(15*time.Second)), "expired: b takes over")
		require.False(t, lease("a", t0.Add(16*time.Second)), "a lost it")
		require.NoError(t, b.s.ReleaseLease(b.ctx, "retention", "a"), "releasing someone else's lease is a no-op")
		require.False(t, lease("a", t0.Add(17*time.Second)))
		require.NoError(t, b.s.ReleaseLease(b.ctx, "retention", "b"))
		require.True(t, lease("a", t0.Add(18*time.Second)), "released: free at once")

		ok, err := b.s.AcquireLease(b.ctx, store.LeaseParams{Name: "other", Holder: "b", Now: t0, Until: t0.Add(time.Second)})
		require.NoError(t, err)
		require.True(t, ok, "leases are independent by name")
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var evs []store.NewEvent
		for i := range 5 {
			e := newEvent("src", fmt.Sprintf("old%d", i), "flow_a")
			e.ReceivedAt = t0.Add(time.Duration(i) * time.Second)
			evs = append(evs, e)
		}
		fresh := newEvent("src", "fresh", "flow_a")
		fresh.ReceivedAt = t0.Add(time.Hour)
		res, err := b.s.InsertEvents(b.ctx, append(evs, fresh))
		require.NoError(t, err)
		// Finish the runs of old0..old3; old4's run is still pending.
		got, err := store.ClaimRuns(b.ctx, b.s, claim("w", t0.Add(3*time.Second), 4))
		require.NoError(t, err)
		require.Len(t, got, 4)
		var fins []store.FinishParams
		for _, c := range got {
			fins = append(fins, store.FinishParams{RunID: c.Run.ID, Token: "w", Now: t0.Add(time.Hour),
				Attempt: attempt(0, "step1", store.AttemptSucceeded), Output: []byte(`{}`),
				State: store.RunSucceeded, Step: 1, DueAt: t0.Add(time.Hour)})
		}
		_, err = store.FinishAttempts(b.ctx, b.s, fins)
		require.NoError(t, err)

		cutoff := t0.Add(30 * time.Minute)
		r, err := b.s.DeleteExpired(b.ctx, store.DeleteParams{Before: cutoff, Limit: 3})
		require.NoError(t, err)
		require.Equal(t, store.DeleteResult{Deleted: 3, Last: evs[2].ReceivedAt, LastID: res[2].EventID}, r, "batch limit")
		r, err = b.s.DeleteExpired(b.ctx, store.DeleteParams{Before: cutoff, After: r.Last, AfterID: r.LastID, Limit: 3})
		require.NoError(t, err)
		require.Equal(t, store.DeleteResult{Deleted: 1, Kept: 1, Last: evs[4].ReceivedAt, LastID: res[4].EventID, Done: true}, r,
			"unfinished runs keep their event; the fresh one is not examined")
		r, err = b.s.DeleteExpired(b.ctx, store.DeleteParams{Before: cutoff, Limit: 3})
		require.NoError(t, err)
		require.Equal(t, store.DeleteResult{Kept: 1, Last: evs[4].ReceivedAt, LastID: res[4].EventID, Done: true}, r,
			"a new pass starts at the oldest event")

		left, err := b.s.ListEvents(b.ctx, store.ListEventsParams{})
		require.NoError(t, err)
		require.Len(t, left, 2)
		_, err = b.s.GetRun(b.ctx, got[0].Run.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "runs go with their event")
		attempts, err := b.s.ListAttempts(b.ctx, got[0].Run.ID)
		require.NoError(t, err)
		require.Empty(t, attempts, "attempts go with their run")
		_, err = b.s.GetEvent(b.ctx, res[5].EventID)
		require.NoError(t, err)
	})

	// A retention pass behind many expired events kept for their unfinished
	// runs: each batch examines at most its limit of events, kept or
	// deleted, and the next starts after the last one examined, so no batch
	// reads the kept events again (their number does not add to its cost),
	// and the pass still reaches and deletes everything deletable. Events
	// sharing a receipt time straddle the batches' boundaries.
	t.Run("DeleteExpiredWalksPastKeptEvents", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const kept, deletable, limit = 1200, 900, 500
		var evs []store.NewEvent
		at := t0
		for i := range kept {
			e := newEvent("src", fmt.Sprintf("kept%d", i), "flow_a") // its run is pending
			e.ReceivedAt = at
			at = at.Add(time.Millisecond)
			evs = append(evs, e)
		}
		keptAfter := 0
		for i := range deletable {
			e := newEvent("src", fmt.Sprintf("old%d", i))
			e.ReceivedAt = at
			if i%3 == 2 {
				at = at.Add(time.Millisecond)
			}
			evs = append(evs, e)
			if i%100 == 50 {
				e := newEvent("src", fmt.Sprintf("kept-after%d", i), "flow_a")
				e.ReceivedAt = at
				evs = append(evs, e)
				keptAfter++
			}
		}
		fresh := newEvent("src", "fresh")
		fresh.ReceivedAt = t0.Add(time.Hour)
		_, err := b.s.InsertEvents(b.ctx, append(evs, fresh))
		require.NoError(t, err)

		p := store.DeleteParams{Before: t0.Add(30 * time.Minute), Limit: limit}
		var deleted []int
		keptSeen := 0
		for range 10 {
			r, err := b.s.DeleteExpired(b.ctx, p)
			require.NoError(t, err)
			deleted = append(deleted, r.Deleted)
			keptSeen += r.Kept
			if r.Done {
				break
			}
			require.True(t, r.Last.After(p.After) || r.Last.Equal(p.After) && r.LastID > p.AfterID, "the pass moves on")
			p.After, p.AfterID = r.Last, r.LastID
		}
		// 2109 expired events: four full batches and a last one of 109.
		require.Len(t, deleted, 5, "one batch per %d events examined, the last one short", limit)
		require.Equal(t, []int{0, 0}, deleted[:2], "the first two batches examine only kept events")
		total := 0
		for _, n := range deleted {
			total += n
		}
		require.Equal(t, deletable, total, "the pass deletes every deletable event")
		require.Equal(t, kept+keptAfter, keptSeen, "and counts each kept event once")
		left, err := b.s.ListEvents(b.ctx, store.ListEventsParams{Limit: 10_000})
		require.NoError(t, err)
		require.Len(t, left, kept+keptAfter+1, "the kept events and the fresh one are left")
		for _, e := range left {
			require.NotContains(t, e.Key, "old")
		}
	})

	t.Run("Stats", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		stats, err := b.s.QueueStats(b.ctx)
		require.NoError(t, err)
		require.Empty(t, stats)
		_, ok, err := b.s.LastEventAt(b.ctx, "src")
		require.NoError(t, err)
		require.False(t, ok)

		var evs []store.NewEvent
		for i := range 4 {
			e := newEvent("src", fmt.Sprintf("k%d", i), "flow_a")
			e.ReceivedAt = t0.Add(time.Duration(i) * time.Second)
			evs = append(evs, e)
		}
		other := newEvent("other", "k9", "flow_b")
		other.ReceivedAt = t0.Add(10 * time.Second) // not due at the claim below
		evs = append(evs, other)
		_, err = b.s.InsertEvents(b.ctx, evs)
		require.NoError(t, err)
		// flow_a: k0 succeeds, k1 dies, k2 runs, k3 waits.
		got, err := store.ClaimRuns(b.ctx, b.s, claim("w", t0.Add(2*time.Second), 3))
		require.NoError(t, err)
		require.Len(t, got, 3)
		byKey := map[string]store.ClaimedRun{}
		for _, c := range got {
			byKey[c.Event.Key] = c
		}
		done := attempt(0, "step1", store.AttemptSucceeded)
		failed := attempt(0, "step1", store.AttemptDead)
		failed.Status, failed.System = 400, "sms"
		_, err = store.FinishAttempts(b.ctx, b.s, []store.FinishParams{
			{RunID: byKey["k0"].Run.ID, Token: "w", Now: t0.Add(3 * time.Second), Attempt: done, State: store.RunSucceeded, Step: 1, DueAt: t0},
			{RunID: byKey["k1"].Run.ID, Token: "w", Now: t0.Add(3 * time.Second), Attempt: failed, State: store.RunDead, Step: 0, DueAt: t0},
		})
		require.NoError(t, err)

		stats, err = b.s.QueueStats(b.ctx)
		require.NoError(t, err)
		require.Equal(t, []store.FlowStats{
			{Flow: "flow_a", Waiting: 1, Running: 1, Dead: 1, OldestWaiting: t0.Add(3 * time.Second)},
			{Flow: "flow_b", Waiting: 1, OldestWaiting: t0.Add(10 * time.Second)},
		}, stats)

		last, ok, err := b.s.LastEventAt(b.ctx, "src")
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, last.Equal(t0.Add(3*time.Second)), "newest event of the source: %s", last)
		last, ok, err = b.s.LastEventAt(b.ctx, "other")
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, last.Equal(t0.Add(10*time.Second)), "sources are apart: %s", last)

		counts, err := b.s.AttemptStats(b.ctx, t0)
		require.NoError(t, err)
		require.Equal(t, []store.AttemptCount{
			{System: "crm", Outcome: store.AttemptSucceeded, Count: 1},
			{System: "sms", Outcome: store.AttemptDead, Count: 1},
		}, counts)
		later, err := b.s.AttemptStats(b.ctx, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Empty(t, later, "only attempts in the window")
	})

	t.Run("SystemPauses", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first, err := b.s.PauseSystem(b.ctx, store.PauseParams{System: "crm", Reason: "HTTP 401", Now: t0})
		require.NoError(t, err)
		require.True(t, first)
		again, err := b.s.PauseSystem(b.ctx, store.PauseParams{System: "crm", Reason: "HTTP 403", Now: t0.Add(time.Second)})
		require.NoError(t, err)
		require.False(t, again, "one pause per system: one alert")
		op, err := b.s.PauseSystem(b.ctx, store.PauseParams{System: "crm", Reason: store.OperatorPause, Now: t0.Add(2 * time.Second)})
		require.NoError(t, err)
		require.True(t, op, "an operator's pause replaces a credential pause")
		again, err = b.s.PauseSystem(b.ctx, store.PauseParams{System: "crm", Reason: "HTTP 401", Now: t0.Add(3 * time.Second)})
		require.NoError(t, err)
		require.False(t, again, "and is not replaced by one")
		pauses, err := b.s.ListPauses(b.ctx)
		require.NoError(t, err)
		require.Equal(t, store.OperatorPause, pauses[0].Reason)
		lifted, err := b.s.ResumeCredentialPause(b.ctx, "crm")
		require.NoError(t, err)
		require.False(t, lifted, "a probe does not lift an operator's pause")
		pauses, err = b.s.ListPauses(b.ctx)
		require.NoError(t, err)
		require.Len(t, pauses, 1)
		_, err = b.s.ResumeSystem(b.ctx, "crm")
		require.NoError(t, err)
		first, err = b.s.PauseSystem(b.ctx, store.PauseParams{System: "crm", Reason: "HTTP 401", Now: t0})
		require.NoError(t, err)
		require.True(t, first)
		pauses, err = b.s.ListPauses(b.ctx)
		require.NoError(t, err)
		require.Equal(t, []store.SystemPause{{System: "crm", Reason: "HTTP 401", PausedAt: t0}}, pauses)
		ok, err := b.s.ResumeCredentialPause(b.ctx, "crm")
		require.NoError(t, err)
		require.True(t, ok, "a probe lifts a credential pause")
		ok, err = b.s.ResumeSystem(b.ctx, "crm")
		require.NoError(t, err)
		require.False(t, ok)
		pauses, err = b.s.ListPauses(b.ctx)
		require.NoError(t, err)
		require.Empty(t, pauses)
	})

	t.Run("ListEvents", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for i := range 5 {
			e := newEvent("src", fmt.Sprintf("k%d", i), "flow_a")
			e.ReceivedAt = t0.Add(time.Duration(i) * time.Second)
			_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{e})
			require.NoError(t, err)
		}
		evs, err := b.s.ListEvents(b.ctx, store.ListEventsParams{Limit: 2})
		require.NoError(t, err)
		require.Len(t, evs, 2)
		require.Equal(t, "k4", evs[0].Key, "newest first")
		older, err := b.s.ListEvents(b.ctx, store.ListEventsParams{Before: evs[1].ReceivedAt, Limit: 10})
		require.NoError(t, err)
		require.Len(t, older, 3)
		none, err := b.s.ListEvents(b.ctx, store.ListEventsParams{Source: "nope"})
		require.NoError(t, err)
		require.Empty(t, none)
		_, err = b.s.GetEvent(b.ctx, "evt_missing")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ListEventsByState", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// src: k0..k11 one run each, k12 two runs; other: k0 one run.
		var evs []store.NewEvent
		for i := range 13 {
			e := newEvent("src", fmt.Sprintf("k%d", i), "flow_a")
			if i == 12 {
				e = newEvent("src", "k12", "flow_a", "flow_b")
			}
			e.ReceivedAt = t0.Add(time.Duration(i) * time.Second)
			evs = append(evs, e)
		}
		evs = append(evs, newEvent("other", "k0", "flow_a"))
		_, err := b.s.InsertEvents(b.ctx, evs)
		require.NoError(t, err)
		// The oldest three of src, both runs of k12 and other's run die;
		// k10 and k11 stay running; the rest succeed.
		b.settle(t, 15, []string{"k0", "k1", "k2", "k12"}, []string{"k10", "k11"})
		keys := func(p store.ListEventsParams) []string {
			return b.listed(t, p, func(e store.Event) string { return e.Source + "/" + e.Key })
		}
		// Dead events are the oldest: a store that first looks at the
		// newest events must still find them.
		require.Equal(t, []string{"src/k12", "src/k2"}, keys(store.ListEventsParams{Source: "src", State: store.RunDead, Limit: 2}),
			"newest first, an event with two dead runs once")
		require.Equal(t, []string{"src/k1", "src/k0"}, keys(store.ListEventsParams{Source: "src", State: store.RunDead, Limit: 2, Before: t0.Add(2 * time.Second)}))
		require.Len(t, keys(store.ListEventsParams{State: store.RunDead, Limit: 10}), 5, "every source")
		require.Equal(t, []string{"src/k9", "src/k8", "src/k7"}, keys(store.ListEventsParams{Source: "src", State: store.RunSucceeded, Limit: 3}))
		require.Equal(t, []string{"src/k11", "src/k10"}, keys(store.ListEventsParams{Source: "src", State: store.RunRunning, Limit: 5}))
		require.Empty(t, keys(store.ListEventsParams{Source: "src", State: store.RunPending}))
		_, err = b.s.ListEvents(b.ctx, store.ListEventsParams{State: "lost"})
		require.Error(t, err, "unknown states are refused, not matched against nothing")
	})

	t.Run("ListEventsRareState", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// src: k0..k99, one run each, of which the three oldest and the
		// newest die (k1 and k2 received at the same moment); other: k0,
		// dead too. A store that first walks the source's newest events
		// finds too few there and must still list every dead one, in
		// order, page by page.
		at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
		var evs []store.NewEvent
		for i := range 100 {
			e := newEvent("src", fmt.Sprintf("k%d", i), "flow_a")
			e.ReceivedAt = at(i)
			evs = append(evs, e)
		}
		evs[2].ReceivedAt = at(1)
		evs = append(evs, newEvent("other", "k0", "flow_a"))
		_, err := b.s.InsertEvents(b.ctx, evs)
		require.NoError(t, err)
		b.settle(t, 101, []string{"k0", "k1", "k2", "k99"}, nil)
		keys := func(p store.ListEventsParams) []string {
			return b.listed(t, p, func(e store.Event) string { return e.Key })
		}
		tied := []string{"k2", "k1"} // same receipt time: id descending
		if evs[1].ID > evs[2].ID {
			tied = []string{"k1", "k2"}
		}
		dead := store.ListEventsParams{Source: "src", State: store.RunDead, Limit: 3}
		require.Equal(t, append([]string{"k99"}, tied...), keys(dead), "more dead events than the limit")
		dead.Before = at(1)
		require.Equal(t, []string{"k0"}, keys(dead), "the next page")
		dead.Before, dead.Limit = at(99), 2
		require.Equal(t, tied, keys(dead), "a page that starts among the succeeded events")
		dead.Before, dead.Limit = time.Time{}, 10
		require.Equal(t, append([]string{"k99"}, append(tied, "k0")...), keys(dead), "fewer than the limit")
		require.Len(t, keys(store.ListEventsParams{State: store.RunDead, Limit: 10}), 5, "every source")

		// Paging by (received_at, id) from each page's last event loses
		// nothing at a tie, in every plan: unfiltered, by a common state,
		// by a rare one.
		for _, c := range []struct {
			state store.RunState
			want  int
		}{{"", 100}, {store.RunSucceeded, 96}, {store.RunDead, 4}} {
			for _, size := range []int{1, 2, 7} {
				p := store.ListEventsParams{Source: "src", State: c.state, Limit: size}
				var all []string
				for range 200 {
					page, err := b.s.ListEvents(b.ctx, p)
					require.NoError(t, err)
					for _, e := range page {
						all = append(all, e.Key)
					}
					if len(page) < size {
						break
					}
					last := page[len(page)-1]
					p.Before, p.BeforeID = last.ReceivedAt, last.ID
				}
				require.Len(t, all, c.want, "state %q, pages of %d", c.state, size)
				seen := map[string]bool{}
				for _, k := range all {
					require.False(t, seen[k], "state %q, pages of %d: %s listed twice", c.state, size, k)
					seen[k] = true
				}
				require.True(t, seen["k1"] && seen["k2"] || c.state == store.RunSucceeded, "both tied events listed")
			}
		}
	})

	runPolls(t, open)
	runOwnership(t, setup)
}

// settle claims every run, an hour after t0 (want of them), and finishes
// each by its event's key: dead if in dead, left running if in running,
// succeeded otherwise.
func (b bundle) settle(t *testing.T, want int, dead, running []string) {
	t.Helper()
	now := t0.Add(time.Hour)
	got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", now, want+1))
	require.NoError(t, err)
	require.Len(t, got, want)
	var ps []store.FinishParams
	for _, c := range got {
		if slices.Contains(running, c.Event.Key) {
			continue
		}
		p := store.FinishParams{RunID: c.Run.ID, Token: "w1", Now: now, Attempt: attempt(0, "step1", store.AttemptSucceeded),
			State: store.RunSucceeded, Step: 1, StepID: "step1", RunAttempt: 1, DueAt: now}
		if slices.Contains(dead, c.Event.Key) {
			p.Attempt.Outcome, p.State, p.Step = store.AttemptDead, store.RunDead, 0
		}
		ps = append(ps, p)
	}
	_, err = store.FinishAttempts(b.ctx, b.s, ps)
	require.NoError(t, err)
}

// listed is ListEvents' answer to p, each event named by name.
func (b bundle) listed(t *testing.T, p store.ListEventsParams, name func(store.Event) string) []string {
	t.Helper()
	evs, err := b.s.ListEvents(b.ctx, p)
	require.NoError(t, err)
	var out []string
	for _, e := range evs {
		out = append(out, name(e))
	}
	return out
}

// insertAndClaim stores events k0…k(n-1) of source src with a run each and
// claims want of them for token w1 at t0.
func (b bundle) insertAndClaim(t *testing.T, n, want int) []store.ClaimedRun {
	t.Helper()
	var evs []store.NewEvent
	for i := range n {
		evs = append(evs, newEvent("src", fmt.Sprintf("k%d", i), "flow_a"))
	}
	_, err := b.s.InsertEvents(b.ctx, evs)
	require.NoError(t, err)
	got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0, want))
	require.NoError(t, err)
	require.Len(t, got, want)
	return got
}

func newEvent(source, key string, flows ...string) store.NewEvent {
	e := store.NewEvent{
		ID: store.NewID("evt_", t0), Source: source, Key: key, ReceivedAt: t0,
		Payload: []byte(fmt.Sprintf(`{"key":%q}`, key)),
	}
	for _, f := range flows {
		e.Runs = append(e.Runs, store.NewRun{ID: store.NewID("run_", t0), Flow: f, StepID: "step1"})
	}
	return e
}

func claim(token string, now time.Time, n int) store.ClaimParams {
	return store.ClaimParams{Token: token, Now: now, LeaseUntil: now.Add(30 * time.Second), Limit: n}
}

func attempt(index int, id string, outcome store.AttemptOutcome) store.Attempt {
	return store.Attempt{
		StepIndex: index, StepID: id, System: "crm", Number: 1, Outcome: outcome, Status: 200,
		Duration: 1500 * time.Millisecond, Response: []byte(`{}`), StartedAt: t0,
	}
}
