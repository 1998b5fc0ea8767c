package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// BenchmarkListEvents1M times the console's listing (the newest 50 events
// of a source, filtered by run state) on a store of 1,000,000 events; see
// storetest.BenchListEvents. It needs SWITCHBOARD_TEST_POSTGRES, and its
// fill takes a while, so it only runs with -bench.
func BenchmarkListEvents1M(b *testing.B) {
	dsn := storetest.PostgresDSN(b)
	s, err := postgres.Open(b.Context(), dsn, postgres.Options{Migrate: true, MaxConns: 4})
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	conn, err := pgx.Connect(b.Context(), dsn)
	require.NoError(b, err)
	defer conn.Close(b.Context())
	t0 := time.Now()
	// One statement per table; rows follow storetest's fill distribution.
	_, err = conn.Exec(b.Context(), `INSERT INTO events (id, source, key, received_at, payload)
		SELECT format('evt_%s', lpad(i::text, 8, '0')), 'src' || (i % $2), 'k' || i,
			$3::timestamptz + i * interval '1 millisecond', convert_to(repeat('x', $4), 'UTF8')
		FROM generate_series(0, $1 - 1) AS i`,
		storetest.ListFillEvents, storetest.ListFillSources, storetest.ListFillStart, storetest.ListFillPayload)
	require.NoError(b, err)
	_, err = conn.Exec(b.Context(), `INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
		SELECT 'run_' || substr(id, 5), id, 'f', CASE
			WHEN substr(id, 5)::bigint % 1000 < $1 THEN 'dead'
			WHEN substr(id, 5)::bigint % 1000 < $2 THEN 'retrying'
			WHEN substr(id, 5)::bigint % 1000 < $3 THEN 'pending'
			ELSE 'succeeded' END, 's', received_at, received_at, received_at FROM events`,
		storetest.ListFillDead, storetest.ListFillDead+storetest.ListFillRetrying,
		storetest.ListFillDead+storetest.ListFillRetrying+storetest.ListFillPending)
	require.NoError(b, err)
	_, err = conn.Exec(b.Context(), `ANALYZE events; ANALYZE runs`)
	require.NoError(b, err)
	b.Logf("filled %d events in %s", storetest.ListFillEvents, time.Since(t0).Round(time.Millisecond))
	storetest.BenchListEvents(b, s)
}
