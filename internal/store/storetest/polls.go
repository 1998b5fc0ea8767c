package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

func pollRecord(id, version, target string, flows ...string) store.PollRecord {
	e := newEvent(target, id+"@"+version, flows...)
	return store.PollRecord{RecordID: id, Version: version, Event: e}
}

func outcomes(res []store.PollResult) []store.PollOutcome {
	out := make([]store.PollOutcome, len(res))
	for i, r := range res {
		out[i] = r.Outcome
	}
	return out
}

func runPolls(t *testing.T, open OpenFunc) {
	t.Run("PollState", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		_, ok, err := s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, s.InitPollState(ctx, "jobs", t0))
		require.NoError(t, s.InitPollState(ctx, "jobs", t0.Add(time.Hour)), "a second init keeps the first")
		st, ok, err := s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, st.NextRunAt.Equal(t0))
		require.False(t, st.HasCursor)
		require.True(t, st.LastRunAt.IsZero())
		require.True(t, st.CursorMovedAt.IsZero())

		require.NoError(t, s.FinishPoll(ctx, store.PollRun{Source: "jobs", Now: t0.Add(time.Second), NextRunAt: t0.Add(time.Minute), Error: "GET /jobs: 500"}))
		require.NoError(t, s.FinishPoll(ctx, store.PollRun{Source: "jobs", Now: t0.Add(2 * time.Second), NextRunAt: t0.Add(2 * time.Minute), Error: "GET /jobs: 503"}))
		st, _, err = s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.Equal(t, 2, st.Failures)
		require.Equal(t, "GET /jobs: 503", st.LastError)
		require.True(t, st.LastOKAt.IsZero())
		require.True(t, st.NextRunAt.Equal(t0.Add(2*time.Minute)))

		require.NoError(t, s.FinishPoll(ctx, store.PollRun{Source: "jobs", Now: t0.Add(3 * time.Second), NextRunAt: t0.Add(3 * time.Minute), Found: 4}))
		st, _, err = s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.Equal(t, 4, st.LastFound)
		require.Zero(t, st.Failures)
		require.Empty(t, st.LastError)
		require.True(t, st.LastOKAt.Equal(t0.Add(3*time.Second)))
		require.True(t, st.LastRunAt.Equal(t0.Add(3*time.Second)))

		// A run skipped (an operator paused its system) moves the next
		// run only: no failure, and the last run and success stay.
		require.NoError(t, s.FinishPoll(ctx, store.PollRun{Source: "jobs", Now: t0.Add(4 * time.Second), NextRunAt: t0.Add(4 * time.Minute), Error: "GET /jobs: 500", Found: 2}))
		require.NoError(t, s.FinishPoll(ctx, store.PollRun{Source: "jobs", Now: t0.Add(5 * time.Second), NextRunAt: t0.Add(5 * time.Minute), Skipped: true}))
		st, _, err = s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.True(t, st.NextRunAt.Equal(t0.Add(5*time.Minute)))
		require.Equal(t, 1, st.Failures)
		require.Equal(t, "GET /jobs: 500", st.LastError)
		require.Equal(t, 2, st.LastFound)
		require.True(t, st.LastOKAt.Equal(t0.Add(3*time.Second)))
		require.True(t, st.LastRunAt.Equal(t0.Add(4*time.Second)))

		require.NoError(t, s.InitPollState(ctx, "another", t0))
		all, err := s.ListPollStates(ctx)
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.Equal(t, "another", all[0].Source)
	})

	t.Run("PollPages", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		require.NoError(t, s.InitPollState(ctx, "jobs", t0))

		res, err := s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: t0, Cursor: "c1", SetCursor: true,
			Records: []store.PollRecord{pollRecord("1", "v1", "jobs", "sync"), pollRecord("2", "v1", "jobs", "sync")}})
		require.NoError(t, err)
		require.Equal(t, []store.PollOutcome{store.PollEmitted, store.PollEmitted}, outcomes(res))
		require.NotEmpty(t, res[0].EventID)
		st, _, err := s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.True(t, st.HasCursor)
		require.Equal(t, "c1", st.Cursor)
		require.True(t, st.CursorMovedAt.Equal(t0))

		// The next poll asks from c1 inclusively: record 2 comes back
		// unchanged, record 1 changed, record 3 is new.
		later := t0.Add(time.Minute)
		res, err = s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: later, Cursor: "c1", SetCursor: true,
			Records: []store.PollRecord{pollRecord("2", "v1", "jobs", "sync"), pollRecord("1", "v2", "jobs", "sync"), pollRecord("3", "v1", "jobs", "sync")}})
		require.NoError(t, err)
		require.Equal(t, []store.PollOutcome{store.PollUnchanged, store.PollEmitted, store.PollEmitted}, outcomes(res))
		st, _, err = s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.True(t, st.CursorMovedAt.Equal(t0), "the same cursor does not count as a move")

		runs, err := s.ListRuns(ctx, store.ListRunsParams{Flow: "sync", Limit: 100})
		require.NoError(t, err)
		require.Len(t, runs, 4, "one run per emitted record version")

		seen, err := s.SeenVersions(ctx, "jobs", []string{"1", "2", "3", "7"})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"1": "v2", "2": "v1", "3": "v1"}, seen)
		none, err := s.SeenVersions(ctx, "other", []string{"1"})
		require.NoError(t, err)
		require.Empty(t, none)

		// A polled record may be the echo of our own write: its lineage is
		// stored with it, as a webhook's is.
		echo := pollRecord("4", "v1", "jobs")
		echo.Event.Lineage = store.Lineage{Outcome: store.EventEcho, Hop: 1, Chain: "web_form → crm customer 4 → jobs", ParentRun: "run_x"}
		res, err = s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: later, Records: []store.PollRecord{echo}})
		require.NoError(t, err)
		require.Equal(t, store.PollEmitted, res[0].Outcome)
		l, err := s.GetLineage(ctx, res[0].EventID)
		require.NoError(t, err)
		require.Equal(t, echo.Event.Lineage, l)

		// A record whose key a webhook already stored is known, not emitted.
		_, err = s.InsertEvents(ctx, []store.NewEvent{newEvent("hooks", "9@v1", "sync")})
		require.NoError(t, err)
		res, err = s.CommitPollPage(ctx, store.PollPage{Source: "backstop", Now: later,
			Records: []store.PollRecord{pollRecord("9", "v1", "hooks", "sync"), pollRecord("10", "v1", "hooks", "sync")}})
		require.NoError(t, err)
		require.Equal(t, []store.PollOutcome{store.PollKnown, store.PollEmitted}, outcomes(res))
		_, ok, err := s.GetPollState(ctx, "backstop")
		require.NoError(t, err)
		require.False(t, ok, "a page without a cursor leaves the state alone")
	})

	t.Run("PollPageIsAtomic", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		// The second record's run reuses the first one's id: the insert
		// fails, and nothing of the page (events, seen versions, cursor)
		// may remain.
		a, b := pollRecord("1", "v1", "jobs", "sync"), pollRecord("2", "v1", "jobs", "sync")
		b.Event.Runs[0].ID = a.Event.Runs[0].ID
		_, err := s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: t0, Cursor: "c9", SetCursor: true, Records: []store.PollRecord{a, b}})
		require.Error(t, err)
		_, ok, err := s.GetPollState(ctx, "jobs")
		require.NoError(t, err)
		require.False(t, ok, "the cursor did not move")
		evs, err := s.ListEvents(ctx, store.ListEventsParams{Source: "jobs", Limit: 10})
		require.NoError(t, err)
		require.Empty(t, evs)
		res, err := s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: t0, Records: []store.PollRecord{pollRecord("1", "v1", "jobs", "sync")}})
		require.NoError(t, err)
		require.Equal(t, store.PollEmitted, res[0].Outcome, "the failed page left no seen version behind")
	})

	t.Run("PollConcurrentCommits", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		// Two committers with the same record (a backfill beside the
		// scheduled poll): one event, whichever wins.
		var wg sync.WaitGroup
		results := make([][]store.PollResult, 8)
		errs := make([]error, len(results))
		for i := range results {
			wg.Go(func() {
				results[i], errs[i] = s.CommitPollPage(ctx, store.PollPage{Source: "jobs", Now: t0, Records: []store.PollRecord{pollRecord("1", "v1", "jobs", "sync")}})
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		emitted := 0
		for _, r := range results {
			if len(r) == 1 && r[0].Outcome == store.PollEmitted {
				emitted++
			}
		}
		require.Equal(t, 1, emitted)
		runs, err := s.ListRuns(ctx, store.ListRunsParams{Flow: "sync", Limit: 10})
		require.NoError(t, err)
		require.Len(t, runs, 1)
	})
}
