package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// BenchmarkListEvents1M times the console's listing (the newest 50 events
// of a source, filtered by run state) on a store of 1,000,000 events; see
// storetest.BenchListEvents. The fill takes a few tens of seconds, so it
// only runs with -bench.
func BenchmarkListEvents1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "list.db")
	s, err := sqlite.Open(b.Context(), path)
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	require.NoError(b, err)
	defer db.Close()
	t0 := time.Now()
	// One statement per table: the fill is SQL's own loop, not a million
	// round trips. Rows follow storetest.ListFill's distribution.
	_, err = db.ExecContext(b.Context(), `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
		INSERT INTO events (id, source, key, received_at, payload)
		SELECT printf('evt_%08d', i), 'src' || (i % ?), 'k' || i, ? + i * 1000, zeroblob(?) FROM n`,
		storetest.ListFillEvents, storetest.ListFillSources, storetest.ListFillStart.UnixMicro(), storetest.ListFillPayload)
	require.NoError(b, err)
	_, err = db.ExecContext(b.Context(), `INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
		SELECT 'run_' || substr(id, 5), id, 'f', CASE
			WHEN CAST(substr(id, 5) AS INTEGER) % 1000 < ? THEN 'dead'
			WHEN CAST(substr(id, 5) AS INTEGER) % 1000 < ? THEN 'retrying'
			WHEN CAST(substr(id, 5) AS INTEGER) % 1000 < ? THEN 'pending'
			ELSE 'succeeded' END, 's', received_at, received_at, received_at FROM events`,
		storetest.ListFillDead, storetest.ListFillDead+storetest.ListFillRetrying,
		storetest.ListFillDead+storetest.ListFillRetrying+storetest.ListFillPending)
	require.NoError(b, err)
	b.Logf("filled %d events in %s", storetest.ListFillEvents, time.Since(t0).Round(time.Millisecond))
	storetest.BenchListEvents(b, s)
}
