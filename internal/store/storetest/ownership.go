package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// runOwnership covers what echo suppression and the hop limit need:
// fingerprints (saved, completed in the finishing transaction, found by
// record, forgotten, pruned) and event lineage.
func runOwnership(t *testing.T, setup func(t *testing.T) bundle) {
	fp := func(id, record, hash string, at time.Time) store.Fingerprint {
		return store.Fingerprint{ID: id, System: "crm", Entity: "customer", RecordID: record, Fields: []string{"email", "name"},
			Hash: hash, RunID: "run_1", Hop: 1, Chain: "form → crm customer " + record, CreatedAt: at, WrittenAt: at}
	}
	find := func(t *testing.T, b bundle, record string, since time.Time) []store.Fingerprint {
		t.Helper()
		got, err := b.s.FindFingerprints(b.ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: record, Since: since})
		require.NoError(t, err)
		return got
	}

	t.Run("FingerprintsFindForgetPrune", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k1", "42", "h1", t0)))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k2", "42", "h2", t0.Add(time.Minute))))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k3", "", "h3", t0.Add(2*time.Minute)))) // a create in flight
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k4", "43", "h4", t0.Add(time.Minute))))
		other := fp("k5", "42", "h5", t0.Add(time.Minute))
		other.System = "sched"
		require.NoError(t, b.s.SaveFingerprint(b.ctx, other))

		got := find(t, b, "42", t0)
		require.Len(t, got, 3, "the record's and the unknown-id ones, not another record's or system's")
		require.Equal(t, []string{"k3", "k2", "k1"}, []string{got[0].ID, got[1].ID, got[2].ID}, "newest first")
		require.Equal(t, fp("k2", "42", "h2", t0.Add(time.Minute)), got[1], "every field round-trips")
		require.Len(t, find(t, b, "42", t0.Add(30*time.Second)), 2, "the window excludes older writes")

		// A retry rewrites the same row; the finish fills in the record id.
		done := fp("k3", "44", "h3b", t0.Add(3*time.Minute))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, done))
		require.Len(t, find(t, b, "42", t0), 2)
		require.Equal(t, []store.Fingerprint{done}, find(t, b, "44", t0))

		// The first echo's record is kept; a retry's upsert leaves it.
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "k2", Source: "hook", RecordID: "42", EchoHash: "whole-1"}))
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "k2", Source: "hook", RecordID: "42", EchoHash: "whole-2"}))
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "k2", Source: "poll", RecordID: "42", EchoHash: "whole-p"}))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k2", "42", "h2", t0.Add(time.Minute))))
		echoOf := func(source string) string {
			got, err := b.s.FindFingerprints(b.ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "42", Source: source, Since: t0})
			require.NoError(t, err)
			return got[0].EchoHash
		}
		require.Equal(t, "whole-1", echoOf("hook"), "only the first echo counts, and saving again keeps it")
		require.Equal(t, "whole-p", echoOf("poll"), "each source has its own first echo")
		require.Empty(t, echoOf("other"))
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "gone", Source: "hook", RecordID: "42", EchoHash: "x"}),
			"a fingerprint forgotten meanwhile is no error")

		n, err := b.s.ForgetFingerprints(b.ctx, store.ForgetFingerprintsParams{System: "crm", Entity: "customer", RecordID: "42", Before: t0.Add(90 * time.Second)})
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Empty(t, find(t, b, "42", t0))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("k2", "42", "h2", t0.Add(time.Minute))))
		require.Empty(t, echoOf("hook"), "a forgotten fingerprint's echoes go with it")
		_, err = b.s.ForgetFingerprints(b.ctx, store.ForgetFingerprintsParams{System: "crm", Entity: "customer", RecordID: "42", Before: t0.Add(90 * time.Second)})
		require.NoError(t, err)

		n, err = b.s.PruneFingerprints(b.ctx, t0.Add(2*time.Minute), 1)
		require.NoError(t, err)
		require.Equal(t, 1, n, "one batch at a time")
		n, err = b.s.PruneFingerprints(b.ctx, t0.Add(2*time.Minute), 10)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Len(t, find(t, b, "44", t0), 1, "newer fingerprints stay")
	})

	t.Run("FingerprintsInWriteOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// w1's call starts, its webhook comes, and w3 (caused by it)
		// starts before w1 is answered: w1 is completed later than w3 was
		// saved, but it is still the older write.
		w1 := fp("w1", "42", "h", t0)
		require.NoError(t, b.s.SaveFingerprint(b.ctx, w1))
		w3 := fp("w3", "42", "h", t0.Add(time.Second))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, w3))
		w1.CreatedAt = t0.Add(2 * time.Second) // answered
		require.NoError(t, b.s.SaveFingerprint(b.ctx, w1))
		got := find(t, b, "42", t0)
		require.Equal(t, []string{"w3", "w1"}, ids(got), "newest write first, however late an older one was answered")
		require.Equal(t, w1, got[1], "the answer moves the window, not the write's place")
		require.Equal(t, []string{"w1"}, ids(find(t, b, "42", t0.Add(1500*time.Millisecond))), "the window counts from the answer")
		// A retry is a new call: it saves the fingerprint with a new time
		// before it, and is then the newest write.
		w1 = fp("w1", "42", "h", t0.Add(3*time.Second))
		require.NoError(t, b.s.SaveFingerprint(b.ctx, w1))
		require.Equal(t, []string{"w1", "w3"}, ids(find(t, b, "42", t0)))
		// The order holds across both kinds, the record's own and those
		// whose record id is not known.
		require.NoError(t, b.s.SaveFingerprint(b.ctx, store.Fingerprint{ID: "u2", System: "crm", Entity: "customer", Fields: []string{"name"},
			Hash: "h", RunID: "run_2", Hop: 1, CreatedAt: t0.Add(4 * time.Second), WrittenAt: t0.Add(2 * time.Second)}))
		require.Equal(t, []string{"w1", "u2", "w3"}, ids(find(t, b, "42", t0)))
		// A fingerprint saved without WrittenAt is in order by CreatedAt.
		require.NoError(t, b.s.SaveFingerprint(b.ctx, store.Fingerprint{ID: "w5", System: "crm", Entity: "customer", RecordID: "42", Fields: []string{"name"},
			Hash: "h", RunID: "run_3", Hop: 1, CreatedAt: t0.Add(5 * time.Second)}))
		got = find(t, b, "42", t0)
		require.Equal(t, []string{"w5", "w1", "u2", "w3"}, ids(got))
		require.Equal(t, t0.Add(5*time.Second), got[0].WrittenAt)
	})

	t.Run("FingerprintsOfUnknownRecords", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("own", "42", "h", t0)))
		for i := range 60 { // creates whose answers named no record, all newer
			require.NoError(t, b.s.SaveFingerprint(b.ctx, fp(fmt.Sprintf("new-%02d", i), "", "h", t0.Add(time.Duration(i+1)*time.Second))))
		}
		got, err := b.s.FindFingerprints(b.ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "42", Since: t0, Limit: 50})
		require.NoError(t, err)
		require.Len(t, got, 51, "the limit bounds each kind apart")
		require.Equal(t, "own", got[50].ID, "the record's own write is never crowded out")
		require.Equal(t, "new-59", got[0].ID, "newest first")
		got, err = b.s.FindFingerprints(b.ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "", Since: t0, Limit: 100})
		require.NoError(t, err)
		require.Len(t, got, 60, "asking for unknown records does not list them twice")

		// The first echo names the record: from then on it is that
		// record's fingerprint, not one that matches any record.
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "new-00", RecordID: "43", EchoHash: "whole"}))
		mine := find(t, b, "43", t0)
		require.Equal(t, "new-00", mine[len(mine)-1].ID)
		require.Equal(t, "43", mine[len(mine)-1].RecordID)
		require.Equal(t, "whole", mine[len(mine)-1].EchoHash)
		require.NotContains(t, ids(find(t, b, "44", t0)), "new-00")
		// Saving it again (the finish, whose answer named no record) keeps
		// the id its echo gave it.
		require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("new-00", "", "h", t0.Add(time.Second))))
		mine = find(t, b, "43", t0)
		require.Equal(t, "new-00", mine[len(mine)-1].ID)
		// Unknown records' fingerprints can be read over a shorter window.
		got, err = b.s.FindFingerprints(b.ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "42",
			Since: t0, UnknownSince: t0.Add(50 * time.Second)})
		require.NoError(t, err)
		require.Equal(t, []string{"new-59", "new-58", "new-57", "new-56", "new-55", "new-54", "new-53", "new-52", "new-51", "new-50", "new-49", "own"}, ids(got))
		// A known record id is never replaced.
		require.NoError(t, b.s.MarkEcho(b.ctx, store.MarkEchoParams{ID: "own", RecordID: "43", EchoHash: "whole"}))
		require.Contains(t, ids(find(t, b, "42", t0)), "own")
	})

	t.Run("FingerprintDroppedInFinish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, token := range []string{"w1", "stale"} { // a lost lease drops it too: the refusal happened
			_, err := b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k-"+token, "flow_a")})
			require.NoError(t, err)
			got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0, 10))
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("key-"+token, "", "h", t0)))
			require.NoError(t, b.s.SaveFingerprint(b.ctx, fp("other-"+token, "", "h", t0)))
			errs, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
				RunID: got[0].Run.ID, Token: token, Now: t0.Add(time.Second), Attempt: attempt(0, "step1", store.AttemptDead),
				State: store.RunDead, Step: 0, StepID: "step1", DueAt: t0, DropFingerprint: "key-" + token,
			}})
			require.NoError(t, err)
			if token == "stale" {
				require.ErrorIs(t, errs[0], store.ErrLeaseLost)
			} else {
				require.NoError(t, errs[0])
			}
			left := ids(find(t, b, "42", t0))
			require.NotContains(t, left, "key-"+token, "a refused write leaves no fingerprint")
			require.Contains(t, left, "other-"+token)
		}
	})

	t.Run("FingerprintInFinish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got := b.insertAndClaim(t, 1, 1)
		run := got[0].Run
		f := fp("key-1", "42", "h", t0.Add(time.Second))
		errs, err := store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: run.ID, Token: "w1", Now: t0.Add(time.Second), Attempt: attempt(0, "step1", store.AttemptSucceeded),
			State: store.RunSucceeded, Step: 1, StepID: "step1", DueAt: t0, Fingerprint: &f,
		}})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		require.Equal(t, []store.Fingerprint{f}, find(t, b, "42", t0))

		// A lost lease still records the write: it happened.
		_, err = b.s.InsertEvents(b.ctx, []store.NewEvent{newEvent("src", "k2", "flow_a")})
		require.NoError(t, err)
		got, err = store.ClaimRuns(b.ctx, b.s, claim("w2", t0.Add(time.Minute), 10))
		require.NoError(t, err)
		require.Len(t, got, 1)
		g := fp("key-2", "43", "h", t0.Add(time.Minute))
		errs, err = store.FinishAttempts(b.ctx, b.s, []store.FinishParams{{
			RunID: got[0].Run.ID, Token: "stale", Now: t0.Add(time.Minute), Attempt: attempt(0, "step1", store.AttemptSucceeded),
			State: store.RunSucceeded, Step: 1, StepID: "step1", DueAt: t0, Fingerprint: &g,
		}})
		require.NoError(t, err)
		require.ErrorIs(t, errs[0], store.ErrLeaseLost)
		require.Equal(t, []store.Fingerprint{g}, find(t, b, "43", t0))
	})

	t.Run("Lineage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		caused := newEvent("crm_changed", "k1", "flow_a")
		caused.Lineage = store.Lineage{Hop: 2, Chain: "form → crm customer 42 → crm_changed", ParentRun: "run_x"}
		echo := newEvent("crm_changed", "k2")
		echo.Lineage = store.Lineage{Outcome: store.EventEcho, Hop: 1, Chain: "form → crm customer 42 → crm_changed", ParentRun: "run_y"}
		plain := newEvent("crm_changed", "k3", "flow_a")
		res, err := b.s.InsertEvents(b.ctx, []store.NewEvent{caused, echo, plain})
		require.NoError(t, err)

		for i, want := range []store.Lineage{caused.Lineage, echo.Lineage, {}} {
			l, err := b.s.GetLineage(b.ctx, res[i].EventID)
			require.NoError(t, err)
			require.Equal(t, want, l)
		}
		// A duplicate does not overwrite the stored lineage.
		dup := newEvent("crm_changed", "k1")
		dup.Lineage = store.Lineage{Outcome: store.EventEcho, Hop: 9}
		res2, err := b.s.InsertEvents(b.ctx, []store.NewEvent{dup})
		require.NoError(t, err)
		require.True(t, res2[0].Duplicate)
		l, err := b.s.GetLineage(b.ctx, res[0].EventID)
		require.NoError(t, err)
		require.Equal(t, caused.Lineage, l)

		got, err := store.ClaimRuns(b.ctx, b.s, claim("w1", t0, 10))
		require.NoError(t, err)
		require.Len(t, got, 2)
		byEvent := map[string]store.Lineage{}
		for _, c := range got {
			byEvent[c.Event.ID] = c.Lineage
		}
		require.Equal(t, caused.Lineage, byEvent[res[0].EventID], "a claimed run carries its event's chain")
		require.Equal(t, store.Lineage{}, byEvent[res[2].EventID])

		// Retention deletes the lineage with its event.
		_, err = b.s.DeleteExpired(b.ctx, store.DeleteParams{Before: t0.Add(time.Hour), Limit: 10})
		require.NoError(t, err)
		l, err = b.s.GetLineage(b.ctx, res[1].EventID)
		require.NoError(t, err)
		require.True(t, l.IsZero())
	})
}

func ids(fps []store.Fingerprint) []string {
	out := make([]string, len(fps))
	for i, f := range fps {
		out[i] = f.ID
	}
	return out
}
