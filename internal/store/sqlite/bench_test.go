package sqlite_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/bench"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

func openBench(b *testing.B) *sqlite.Store {
	b.Helper()
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s
}

var payload = []byte(`{"id":"x","email":"ann@example.com","notes":"` + strings.Repeat("x", 950) + `"}`)

func batchOf(n, from int, now time.Time) []store.NewEvent {
	evs := make([]store.NewEvent, n)
	for i := range evs {
		evs[i] = store.NewEvent{
			// A microsecond apart, as requests arrive: with one shared time
			// every index on it would see ties broken by random IDs.
			ID: store.NewID("evt_", now), Source: "bench", Key: fmt.Sprint(from + i), ReceivedAt: now.Add(time.Duration(from+i) * time.Microsecond), Payload: payload,
			Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "deliver", StepID: "post"}},
		}
	}
	return evs
}

// BenchmarkInsertEvents measures one group commit of 64 events with a run
// each: the ingest hot path. Report per event with -benchtime and the
// events/op metric.
func BenchmarkInsertEvents(b *testing.B) {
	s := openBench(b)
	now := time.Now()
	n := 0
	cpu0 := bench.CPUTime()
	for b.Loop() {
		_, err := s.InsertEvents(b.Context(), batchOf(64, n, now))
		require.NoError(b, err)
		n += 64
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/event")
	b.ReportMetric(float64((bench.CPUTime()-cpu0).Microseconds())/float64(n), "cpu-µs/event")
}

// BenchmarkClaimFinish measures the executor's store cycle: claim 32 runs,
// then finish them in one batch.
func BenchmarkClaimFinish(b *testing.B) {
	s := openBench(b)
	now := time.Now()
	for i := 0; i < 200; i++ {
		_, err := s.InsertEvents(b.Context(), batchOf(256, i*256, now))
		require.NoError(b, err)
	}
	runs := 0
	cpu0 := bench.CPUTime()
	for b.Loop() {
		tok := store.NewID("tok_", now)
		got, err := s.ClaimRuns(b.Context(), store.ClaimParams{Token: tok, Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Limit: 32})
		require.NoError(b, err)
		if len(got) == 0 {
			b.Fatal("queue drained; raise the number of events")
		}
		_, err = s.FinishAttempts(b.Context(), finished(got, tok, now))
		require.NoError(b, err)
		runs += len(got)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(runs), "µs/run")
	b.ReportMetric(float64((bench.CPUTime()-cpu0).Microseconds())/float64(runs), "cpu-µs/run")
}

// BenchmarkFinishAndClaim is BenchmarkClaimFinish as the executor runs it:
// each transaction finishes the previous batch and claims the next.
func BenchmarkFinishAndClaim(b *testing.B) {
	s := openBench(b)
	now := time.Now()
	for i := 0; i < 200; i++ {
		_, err := s.InsertEvents(b.Context(), batchOf(256, i*256, now))
		require.NoError(b, err)
	}
	runs := 0
	var ps []store.FinishParams
	cpu0 := bench.CPUTime()
	for b.Loop() {
		tok := store.NewID("tok_", now)
		claim := store.ClaimParams{Token: tok, Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Limit: 32}
		_, got, err := s.FinishAndClaim(b.Context(), ps, &claim)
		require.NoError(b, err)
		if len(got) == 0 {
			b.Fatal("queue drained; raise the number of events")
		}
		ps = finished(got, tok, now)
		runs += len(got)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(runs), "µs/run")
	b.ReportMetric(float64((bench.CPUTime()-cpu0).Microseconds())/float64(runs), "cpu-µs/run")
}

// finished is a successful result for each claimed run.
func finished(got []store.ClaimedRun, tok string, now time.Time) []store.FinishParams {
	ps := make([]store.FinishParams, len(got))
	for i, c := range got {
		ps[i] = store.FinishParams{RunID: c.Run.ID, Token: tok, Now: now,
			Attempt: store.Attempt{StepID: "post", System: "sink", Number: 1, Outcome: store.AttemptSucceeded, Status: 200, Response: []byte(`{"ok":true}`), StartedAt: now},
			Output:  []byte(`{"ok":true}`), State: store.RunSucceeded, Step: 1, RunAttempt: 1, DueAt: now}
	}
	return ps
}
