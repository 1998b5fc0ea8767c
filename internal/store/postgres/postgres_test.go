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

// TestRetryDuringRetention interleaves an operator's retry of a dead run
// with the retention pass deleting its expired event, on two nodes. A third
// connection holds a run's row lock, so that one of them waits inside its
// transaction at the step that touches that run while the other runs; then
// the lock is released and both finish. Either the run is kept and pending,
// as the retry reported, or the retry reports that the run is gone: never a
// retry reported done whose run then vanishes with its event.
func TestRetryDuringRetention(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour)
	cutoff := now.Add(-30 * 24 * time.Hour)

	type bundle struct {
		ctx       context.Context
		retrier   *postgres.Store // the operator's node
		retention *postgres.Store // the node holding the retention lease
		conn      *pgx.Conn       // setup, and the third connection
		waiting   func(node string) bool
	}
	setup := func(t *testing.T) *bundle {
		t.Helper()
		ctx := t.Context()
		dsn := storetest.PostgresDSN(t)
		// Each node's connections carry its name, to see which one waits.
		tag := fmt.Sprintf("%x", time.Now().UnixNano())
		node := func(name string, migrate bool) *postgres.Store {
			s, err := postgres.Open(ctx, dsn+"&application_name="+name+tag, postgres.Options{Migrate: migrate, MaxConns: 2})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}
		b := &bundle{ctx: ctx, retrier: node("retrier", true), retention: node("retention", false)}
		conn, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(context.Background()) })
		b.conn = conn
		b.waiting = func(name string) bool {
			var n int
			err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
				name+tag).Scan(&n)
			return err == nil && n > 0
		}
		return b
	}
	// insert stores an expired event with one run per state given.
	insert := func(t *testing.T, b *bundle, key string, states ...store.RunState) []string {
		t.Helper()
		e := store.NewEvent{ID: store.NewID("evt_", old), Source: "src", Key: key, ReceivedAt: old, Payload: []byte(`{}`)}
		var ids []string
		for i := range states {
			e.Runs = append(e.Runs, store.NewRun{ID: store.NewID("run_", old), Flow: fmt.Sprintf("f%d", i), StepID: "s"})
			ids = append(ids, e.Runs[i].ID)
		}
		_, err := b.retrier.InsertEvents(b.ctx, []store.NewEvent{e})
		require.NoError(t, err)
		for i, st := range states {
			_, err := b.conn.Exec(b.ctx, `UPDATE runs SET state = $1 WHERE id = $2`, st, ids[i])
			require.NoError(t, err)
		}
		return ids
	}
	// hold locks the run's row in a transaction left open; release ends it.
	hold := func(t *testing.T, b *bundle, runID string) (release func()) {
		t.Helper()
		tx, err := b.conn.Begin(b.ctx)
		require.NoError(t, err)
		_, err = tx.Exec(b.ctx, `SELECT 1 FROM runs WHERE id = $1 FOR UPDATE`, runID)
		require.NoError(t, err)
		return func() { require.NoError(t, tx.Rollback(b.ctx)) }
	}
	type outcome[T any] struct {
		v   T
		err error
	}
	retry := func(b *bundle, runID string) chan outcome[store.Run] {
		c := make(chan outcome[store.Run], 1)
		go func() {
			r, err := b.retrier.RetryRun(b.ctx, store.RetryParams{RunID: runID, Now: now})
			c <- outcome[store.Run]{r, err}
		}()
		return c
	}
	sweep := func(b *bundle) chan outcome[store.DeleteResult] {
		c := make(chan outcome[store.DeleteResult], 1)
		go func() {
			r, err := b.retention.DeleteExpired(b.ctx, store.DeleteParams{Before: cutoff, Limit: 10})
			c <- outcome[store.DeleteResult]{r, err}
		}()
		return c
	}

	t.Run("RetryFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := insert(t, b, "k", store.RunDead)[0]
		release := hold(t, b, run)
		retried := retry(b, run)
		require.Eventually(t, func() bool { return b.waiting("retrier") }, 10*time.Second, 10*time.Millisecond,
			"the retry waits for the run's row")
		swept := sweep(b)
		// Retention either passes over the event at once, or waits too.
		require.Eventually(t, func() bool { return len(swept) > 0 || b.waiting("retention") }, 10*time.Second, 10*time.Millisecond)
		release()

		r := <-retried
		require.NoError(t, r.err)
		require.Equal(t, store.RunPending, r.v.State, "the operator is told the run is pending")
		s := <-swept
		require.NoError(t, s.err)
		got, err := b.retrier.GetRun(b.ctx, run)
		require.NoError(t, err, "the run the retry made pending is still there")
		require.Equal(t, store.RunPending, got.State)
		r2, err := b.retention.DeleteExpired(b.ctx, store.DeleteParams{Before: cutoff, Limit: 10})
		require.NoError(t, err)
		require.Zero(t, r2.Deleted, "a pending run keeps its event")
	})

	t.Run("RetentionFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := insert(t, b, "k", store.RunDead, store.RunSucceeded)
		// Retention deletes the event and, cascading, waits for the
		// succeeded run's row; the retry of the dead one comes meanwhile.
		release := hold(t, b, runs[1])
		swept := sweep(b)
		require.Eventually(t, func() bool { return b.waiting("retention") }, 10*time.Second, 10*time.Millisecond,
			"retention waits for the run's row")
		retried := retry(b, runs[0])
		require.Eventually(t, func() bool { return len(retried) > 0 || b.waiting("retrier") }, 10*time.Second, 10*time.Millisecond)
		release()

		s := <-swept
		require.NoError(t, s.err)
		require.Equal(t, 1, s.v.Deleted, "the event expired with its runs finished")
		r := <-retried
		require.ErrorIs(t, r.err, store.ErrNotFound, "the retry is told the run is gone")
		_, err := b.retrier.GetRun(b.ctx, runs[0])
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// TestReadOnlyDatabaseIsNotReady: a database that answers but takes no
// writes (the DSN names a standby after a failover) makes Ping, and so
// /readyz, fail, while a read-only command can still open it.
func TestReadOnlyDatabaseIsNotReady(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{Migrate: true, MaxConns: 2})
	require.NoError(t, err)
	require.NoError(t, s.Ping(t.Context()))
	s.Close()

	ro, err := postgres.Open(t.Context(), dsn+"&default_transaction_read_only=on", postgres.Options{MaxConns: 2})
	require.NoError(t, err, "reading is still possible")
	defer ro.Close()
	require.ErrorContains(t, ro.Ping(t.Context()), "read-only")
}
