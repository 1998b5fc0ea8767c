package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// BenchDeleteExpired times retention passes (DeleteExpired batches of 500,
// each starting after the previous one) over expired events of which the
// oldest are kept: they still have a pending run. Each iteration adds 2,000
// deletable expired events, received after the kept ones, and deletes them
// in one pass. For each number of kept events it reports the batches of a
// pass, the median and 90th percentile batch (a batch holds SQLite's write
// lock, so its time is how long ingest may wait behind retention; the
// longest is left out, as on a shared machine it measures the neighbours)
// and the median pass. The kept events are added to s as the cases grow, so
// one store serves them all.
func BenchDeleteExpired(b *testing.B, s store.Store) {
	const deletable, batch = 2000, 500
	before := t0.Add(30 * 24 * time.Hour)
	have := 0 // kept events stored so far, received a millisecond apart from t0
	fresh := 0
	for _, kept := range []int{0, 10_000, 40_000} {
		b.Run(fmt.Sprintf("kept=%d", kept), func(b *testing.B) {
			for have < kept {
				n := min(1000, kept-have)
				evs := make([]store.NewEvent, n)
				for i := range evs {
					evs[i] = newEvent("kept", fmt.Sprint(have+i), "flow_a")
					evs[i].ReceivedAt = t0.Add(time.Duration(have+i) * time.Millisecond)
				}
				_, err := s.InsertEvents(b.Context(), evs)
				require.NoError(b, err)
				have += n
			}
			var took, passes []time.Duration
			batches := 0
			for b.Loop() {
				for range deletable / 1000 {
					evs := make([]store.NewEvent, 1000)
					for i := range evs {
						evs[i] = newEvent("old", fmt.Sprint(fresh))
						evs[i].ReceivedAt = t0.Add(24*time.Hour + time.Duration(fresh)*time.Microsecond)
						fresh++
					}
					_, err := s.InsertEvents(b.Context(), evs)
					require.NoError(b, err)
				}
				p := store.DeleteParams{Before: before, Limit: batch}
				deleted := 0
				start := time.Now()
				for {
					t := time.Now()
					r, err := s.DeleteExpired(b.Context(), p)
					took = append(took, time.Since(t))
					require.NoError(b, err)
					batches++
					deleted += r.Deleted
					if r.Done {
						break
					}
					p.After, p.AfterID = r.Last, r.LastID
				}
				passes = append(passes, time.Since(start))
				require.Equal(b, deletable, deleted)
			}
			slices.Sort(took)
			slices.Sort(passes)
			b.ReportMetric(float64(batches)/float64(len(passes)), "batches/pass")
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-batch-median")
			b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "ms-batch-p90")
			b.ReportMetric(float64(passes[len(passes)/2].Microseconds())/1000, "ms-pass-median")
			b.ReportMetric(0, "ns/op") // it would include the inserts
		})
	}
}
