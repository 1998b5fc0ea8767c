package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

func open(t testing.TB) store.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), storetest.PostgresDSN(t), postgres.Options{Migrate: true, MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, open)
}

// TestConcurrentMigrations starts several nodes on one empty schema at once:
// the advisory lock makes exactly one apply each migration.
func TestConcurrentMigrations(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn, postgres.Options{Migrate: true, MaxConns: 2})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{Migrate: false})
	require.NoError(t, err, "schema is complete")
	s.Close()
}

func TestRefusesUnmigratedSchema(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(t.Context(), storetest.PostgresDSN(t), postgres.Options{Migrate: false})
	require.ErrorContains(t, err, "switchboard migrate")
}

// TestNotify checks that a commit creating runs wakes a listener on another
// connection. LISTEN takes a moment to be in place, so the test commits
// until a notification arrives, and fails if none ever does.
func TestNotify(t *testing.T) {
	t.Parallel()
	s := open(t).(*postgres.Store)
	woke := make(chan struct{}, 100)
	go s.Listen(t.Context(), func() { woke <- struct{}{} }, nil)
	for i := range 100 {
		now := time.Now()
		_, err := s.InsertEvents(t.Context(), []store.NewEvent{{ID: store.NewID("evt_", now), Source: "s", Key: fmt.Sprint(i),
			ReceivedAt: now, Payload: []byte(`{}`), Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f"}}}})
		require.NoError(t, err)
		select {
		case <-woke:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("no notification after 100 commits that created runs")
}

// TestDuplicateOfUncommittedInsert: another transaction (another node) has
// inserted a key and not yet committed when a batch repeating that key
// starts. The batch waits for it, then reports a duplicate of that row, whose
// id it can only read after its own statement (whose snapshot predates the
// other commit: a later statement of the batch reads it), and creates no
// run for it.
func TestDuplicateOfUncommittedInsert(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(ctx, dsn, postgres.Options{Migrate: true, MaxConns: 4})
	require.NoError(t, err)
	defer s.Close()
	now := time.Now().UTC()
	other, tx := uncommittedEvent(t, dsn, now)

	event := func(key string) store.NewEvent {
		return store.NewEvent{ID: store.NewID("evt_", now), Source: "src", Key: key, ReceivedAt: now, Payload: []byte(`{}`),
			Runs: []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "s"}}}
	}
	type outcome struct {
		res []store.InsertResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := s.InsertEvents(ctx, []store.NewEvent{event("k1"), event("k2")})
		done <- outcome{res, err}
	}()
	otherPID := other.PgConn().PID()
	require.Eventually(t, func() bool {
		var waiting int
		err := other.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, otherPID).Scan(&waiting)
		return err == nil && waiting > 0
	}, 10*time.Second, 10*time.Millisecond, "the batch waits on the other transaction's key")
	require.NoError(t, tx.Commit(ctx))

	got := <-done
	require.NoError(t, got.err)
	require.Equal(t, store.InsertResult{EventID: "evt_other", Duplicate: true}, got.res[0])
	require.False(t, got.res[1].Duplicate)
	runs, err := s.ListRuns(ctx, store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1, "no run for the duplicate")
	require.Equal(t, got.res[1].EventID, runs[0].EventID)
}

// uncommittedEvent opens another connection to dsn and inserts the event
// src/k1 (id evt_other) in a transaction it leaves open: a concurrent
// insert of the same key waits for it. The connection closes (rolling the
// transaction back, unless committed) when the test ends.
func uncommittedEvent(t *testing.T, dsn string, now time.Time) (*pgx.Conn, pgx.Tx) {
	t.Helper()
	other, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { other.Close(context.Background()) })
	tx, err := other.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `INSERT INTO events (id, source, key, received_at, payload) VALUES ('evt_other', 'src', 'k1', $1, '{}')`, now)
	require.NoError(t, err)
	return other, tx
}

// TestLockTimeoutIsNotRefused: an error the server gives that is not about
// the values (here a lock timeout, SQLSTATE 55P03, waiting on another
// transaction's insert of the same key) is not marked ErrRefused, so a
// group commit is not split over it: the same batch may pass a moment later.
func TestLockTimeoutIsNotRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(ctx, dsn+"&options=-c%20lock_timeout%3D100ms", postgres.Options{Migrate: true, MaxConns: 2})
	require.NoError(t, err)
	defer s.Close()
	now := time.Now().UTC()
	_, _ = uncommittedEvent(t, dsn, now)

	_, err = s.InsertEvents(ctx, []store.NewEvent{{ID: store.NewID("evt_", now), Source: "src", Key: "k1", ReceivedAt: now, Payload: []byte(`{}`)}})
	require.ErrorContains(t, err, "55P03")
	require.NotErrorIs(t, err, store.ErrRefused)
}
