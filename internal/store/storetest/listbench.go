package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// The store BenchListEvents expects, filled by each implementation's
// benchmark in bulk SQL: ListFillEvents events spread round-robin over
// ListFillSources sources ("src0", "src1", …), one millisecond apart from
// ListFillStart, each with ListFillPayload bytes of payload and one run. Of
// every 1,000 consecutive events, the first ListFillDead runs are dead, the
// next ListFillRetrying retrying, the next ListFillPending pending and the
// rest succeeded: clusters, as outages leave them. No run is running.
const (
	ListFillEvents   = 1_000_000
	ListFillSources  = 4
	ListFillPayload  = 256
	ListFillDead     = 20 // 2%
	ListFillRetrying = 5  // 0.5%
	ListFillPending  = 2  // 0.2%
)

// ListFillStart is the first event's receipt time.
var ListFillStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchListEvents times the console's listing on a store filled as above:
// the newest 50 events of one source, unfiltered and filtered by each run
// state, and a second page. It reports the median of the iterations in
// ms-median (the target is under 50 ms) and checks the answers.
func BenchListEvents(b *testing.B, s store.Store) {
	cases := []struct {
		name  string
		state store.RunState
		want  int
	}{
		{"all", "", 50},
		{"succeeded", store.RunSucceeded, 50},
		{"dead", store.RunDead, 50},
		{"retrying", store.RunRetrying, 50},
		{"pending", store.RunPending, 50},
		{"running-none", store.RunRunning, 0},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var took, took2 []time.Duration
			for b.Loop() {
				t := time.Now()
				evs, err := s.ListEvents(b.Context(), store.ListEventsParams{Source: "src1", State: c.state, Limit: 50})
				took = append(took, time.Since(t))
				require.NoError(b, err)
				require.Len(b, evs, c.want)
				if len(evs) > 1 {
					require.True(b, evs[0].ReceivedAt.After(evs[1].ReceivedAt), "newest first")
					// Page two starts where this page ends.
					last := evs[len(evs)-1]
					t := time.Now()
					next, err := s.ListEvents(b.Context(), store.ListEventsParams{Source: "src1", State: c.state, Limit: 50, Before: last.ReceivedAt, BeforeID: last.ID})
					took2 = append(took2, time.Since(t))
					require.NoError(b, err)
					require.NotEmpty(b, next)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
			if len(took2) > 0 {
				slices.Sort(took2)
				b.ReportMetric(float64(took2[len(took2)/2].Microseconds())/1000, "ms-page2-median")
			}
			b.ReportMetric(0, "ns/op") // it would include the second page
		})
	}
}
