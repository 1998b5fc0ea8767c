package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/cputime"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// The store benchmarks of the two hot transactions, shared by both stores.
// Their wall time is mostly commit latency (fsync), which moves with the
// disk and the neighbours; they also report the process's CPU per event or
// run, which stays put. PostgreSQL's own CPU is another process's and is
// not counted.

var benchPayload = []byte(`{"id":"x","email":"ann@example.com","notes":"` + strings.Repeat("x", 950) + `"}`)

func benchBatch(n, from int, now time.Time) []store.NewEvent {
	evs := make([]store.NewEvent, n)
	for i := range evs {
		evs[i] = store.NewEvent{
			// A microsecond apart, as requests arrive: with one shared time
			// every index on it would see ties broken by random IDs.
			ID: store.NewID("evt_", now), Source: "bench", Key: fmt.Sprint(from + i), ReceivedAt: now.Add(time.Duration(from+i) * time.Microsecond), Payload: benchPayload,
			Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "deliver", StepID: "post"}},
		}
	}
	return evs
}

// BenchInsertEvents measures one group commit of 64 events with a run
// each: the ingest hot path.
func BenchInsertEvents(b *testing.B, s store.Store) {
	now := time.Now()
	n := 0
	cpu0 := cputime.Used()
	for b.Loop() {
		_, err := s.InsertEvents(b.Context(), benchBatch(64, n, now))
		require.NoError(b, err)
		n += 64
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/event")
	b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(n), "cpu-µs/event")
}

// fillQueue stores 51,200 events with a pending run each.
func fillQueue(b *testing.B, s store.Store, now time.Time) {
	for i := range 200 {
		_, err := s.InsertEvents(b.Context(), benchBatch(256, i*256, now))
		require.NoError(b, err)
	}
}

// BenchClaimFinish measures the executor's store work as two transactions:
// claim 32 runs, then finish them in one batch.
func BenchClaimFinish(b *testing.B, s store.Store) {
	now := time.Now()
	fillQueue(b, s, now)
	runs := 0
	cpu0 := cputime.Used()
	for b.Loop() {
		tok := store.NewID("tok_", now)
		got, err := store.ClaimRuns(b.Context(), s, store.ClaimParams{Token: tok, Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Limit: 32})
		require.NoError(b, err)
		if len(got) == 0 {
			b.Fatal("queue drained; raise the number of events")
		}
		_, err = store.FinishAttempts(b.Context(), s, benchFinished(got, tok, now))
		require.NoError(b, err)
		runs += len(got)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(runs), "µs/run")
	b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(runs), "cpu-µs/run")
}

// BenchFinishAndClaim is BenchClaimFinish as the executor runs it: each
// transaction finishes the previous batch and claims the next.
func BenchFinishAndClaim(b *testing.B, s store.Store) {
	now := time.Now()
	fillQueue(b, s, now)
	runs := 0
	var ps []store.FinishParams
	cpu0 := cputime.Used()
	for b.Loop() {
		tok := store.NewID("tok_", now)
		claim := store.ClaimParams{Token: tok, Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Limit: 32}
		_, got, err := s.FinishAndClaim(b.Context(), ps, &claim)
		require.NoError(b, err)
		if len(got) == 0 {
			b.Fatal("queue drained; raise the number of events")
		}
		ps = benchFinished(got, tok, now)
		runs += len(got)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(runs), "µs/run")
	b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(runs), "cpu-µs/run")
}

// benchFinished is a successful result for each claimed run.
func benchFinished(got []store.ClaimedRun, tok string, now time.Time) []store.FinishParams {
	ps := make([]store.FinishParams, len(got))
	for i, c := range got {
		ps[i] = store.FinishParams{RunID: c.Run.ID, Token: tok, Now: now,
			Attempt: store.Attempt{StepID: "post", System: "sink", Number: 1, Outcome: store.AttemptSucceeded, Status: 200, Response: []byte(`{"ok":true}`), StartedAt: now},
			Output:  []byte(`{"ok":true}`), State: store.RunSucceeded, Step: 1, RunAttempt: 1, DueAt: now}
	}
	return ps
}
