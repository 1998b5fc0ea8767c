package retention_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/logtest"
	"github.com/switchboard-dev/switchboard/internal/retention"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

func TestSweepDeletesOnlyExpiredFinishedEvents(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var evs []store.NewEvent
	for i := range 1200 {
		evs = append(evs, store.NewEvent{ID: store.NewID("evt_", now), Source: "s", Key: fmt.Sprint(i),
			ReceivedAt: now.Add(-40 * 24 * time.Hour), Payload: []byte(`{}`)})
	}
	// One old event still has a pending run: it must survive.
	evs = append(evs, store.NewEvent{ID: store.NewID("evt_", now), Source: "s", Key: "pending",
		ReceivedAt: now.Add(-40 * 24 * time.Hour), Payload: []byte(`{}`),
		Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "a"}}})
	evs = append(evs, store.NewEvent{ID: store.NewID("evt_", now), Source: "s", Key: "recent",
		ReceivedAt: now.Add(-time.Hour), Payload: []byte(`{}`)})
	_, err := st.InsertEvents(t.Context(), evs)
	require.NoError(t, err)

	s := retention.New(retention.Config{Store: st, Keep: 30 * 24 * time.Hour, Batch: 500, NowFunc: func() time.Time { return now }})
	n, err := s.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1200, n, "three batches")
	left, err := st.ListEvents(t.Context(), store.ListEventsParams{})
	require.NoError(t, err)
	var keys []string
	for _, e := range left {
		keys = append(keys, e.Key)
	}
	require.ElementsMatch(t, []string{"pending", "recent"}, keys)
}

// TestSweepPassesKeptEvents: expired events kept for their pending runs,
// older than the deletable ones, fill the first ten batches (a batch
// examines Batch events, kept or not, and deletes none of these); the sweep
// goes on past them, each batch after the last, and deletes everything
// deletable.
func TestSweepPassesKeptEvents(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour)
	var evs []store.NewEvent
	for i := range 1000 {
		evs = append(evs, store.NewEvent{ID: store.NewID("evt_", now), Source: "s", Key: fmt.Sprint("kept", i),
			ReceivedAt: old.Add(time.Duration(i) * time.Millisecond), Payload: []byte(`{}`),
			Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "a"}}})
	}
	for i := range 250 {
		evs = append(evs, store.NewEvent{ID: store.NewID("evt_", now), Source: "s", Key: fmt.Sprint("old", i),
			ReceivedAt: old.Add(time.Hour + time.Duration(i)*time.Millisecond), Payload: []byte(`{}`)})
	}
	_, err := st.InsertEvents(t.Context(), evs)
	require.NoError(t, err)

	s := retention.New(retention.Config{Store: st, Keep: 30 * 24 * time.Hour, Batch: 100, NowFunc: func() time.Time { return now }})
	n, err := s.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, 250, n, "every deletable event, behind ten batches of kept ones")
	left, err := st.ListEvents(t.Context(), store.ListEventsParams{Limit: 5000})
	require.NoError(t, err)
	require.Len(t, left, 1000)
	for _, e := range left {
		require.Contains(t, e.Key, "kept")
	}
}

// TestSweepLogsKeptEvents: a sweep's log line counts the expired events it
// kept for their unfinished runs beside those it deleted: a count that only
// grows points at stuck runs.
func TestSweepLogsKeptEvents(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour)
	evs := []store.NewEvent{
		{ID: store.NewID("evt_", now), Source: "s", Key: "done", ReceivedAt: old, Payload: []byte(`{}`)},
		{ID: store.NewID("evt_", now), Source: "s", Key: "pending", ReceivedAt: old, Payload: []byte(`{}`),
			Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "a"}}},
	}
	_, err := st.InsertEvents(t.Context(), evs)
	require.NoError(t, err)

	logs := &logtest.Buffer{}
	s := retention.New(retention.Config{Store: st, Keep: 30 * 24 * time.Hour, Every: time.Hour,
		NowFunc: func() time.Time { return now }, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "retention sweep") }, 10*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	require.Contains(t, logs.String(), `"deleted_events":1,"kept_events":1`)
}

// openStore opens a SQLite store in the test's directory.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}
