package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// linguisticDSN creates a database whose default collation is ICU en-US,
// as on many production servers, for the test, and drops it at the end.
// It skips the test when the server refuses (no ICU, no CREATEDB).
func linguisticDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("%s is not set", storetest.PostgresEnv)
	}
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.RawQuery = ""
	admin := u.String()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sbtest_icu_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`); err != nil {
		t.Skipf("cannot create a database with an ICU default collation: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// identifierColumns hold ids, keys, names, tokens, hashes and cursors:
// they compare byte by byte whatever the database's collation (migration
// 0011). Every other text column is text for people or an enumeration.
var identifierColumns = []string{
	"events.id", "events.source", "events.key", "events.trace_parent",
	"runs.id", "runs.event_id", "runs.flow", "runs.step_id", "runs.lease_token", "runs.held_system",
	"run_steps.run_id", "run_steps.step_id",
	"attempts.run_id", "attempts.step_id", "attempts.system",
	"leases.name", "leases.holder",
	"system_pauses.system",
	"poll_state.source", "poll_state.cursor",
	"poll_records.source", "poll_records.record_id", "poll_records.version",
	"fingerprints.id", "fingerprints.system", "fingerprints.entity", "fingerprints.record_id", "fingerprints.hash", "fingerprints.run_id",
	"fingerprint_echoes.fingerprint_id", "fingerprint_echoes.source", "fingerprint_echoes.echo_hash",
	"event_lineage.event_id", "event_lineage.parent_run",
}

var peopleColumns = []string{
	"runs.state", "runs.last_error", "attempts.outcome", "attempts.error", "system_pauses.reason",
	"poll_state.last_error", "fingerprints.fields", "fingerprints.chain", "event_lineage.outcome", "event_lineage.chain",
	"schema_migrations.version",
}

// requireByteCollation checks every text column of the schema: the
// identifier columns have collation "C", the others the database's, and
// a column in neither list (a new one) must be put in one.
func requireByteCollation(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT table_name || '.' || column_name, coalesce(collation_name, '')
		FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'text'`)
	require.NoError(t, err)
	var c, collation string
	seen := 0
	_, err = pgx.ForEachRow(rows, []any{&c, &collation}, func() error {
		seen++
		switch {
		case slices.Contains(identifierColumns, c):
			require.Equal(t, "C", collation, "%s holds identifiers: it must compare bytes", c)
		case slices.Contains(peopleColumns, c):
			require.Empty(t, collation, "%s keeps the database's collation", c)
		default:
			t.Errorf("text column %s is in neither identifierColumns nor peopleColumns: an identifier needs COLLATE \"C\"", c)
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, len(identifierColumns)+len(peopleColumns), seen, "every listed column exists")
}

func TestIdentifierColumnsCompareBytes(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{Migrate: true, MaxConns: 2})
	require.NoError(t, err)
	defer s.Close()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	requireByteCollation(t.Context(), t, conn)
}

// TestConformanceLinguistic runs the store's contract on a database whose
// default collation is linguistic (ICU en-US).
func TestConformanceLinguistic(t *testing.T) {
	t.Parallel()
	base := linguisticDSN(t)
	storetest.Run(t, func(t testing.TB) store.Store {
		s, err := postgres.Open(t.Context(), storetest.PostgresSchemaDSN(t, base), postgres.Options{Migrate: true, MaxConns: 8})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRenewalAndFinishLockRunsInOneOrder: a finish batch locks its runs in
// Go's byte order of their ids, a lease renewal (ExtendLeases) in SQL's
// ORDER BY id. Under en-US "run_a" sorts before "run_B", in bytes after,
// and the two deadlocked: the renewal held run_a and waited for run_B,
// which the finish had updated before waiting for run_a. A third
// transaction's key-share lock on run_B (a foreign key check's) holds the
// renewal there; the finish's update does not conflict with it.
func TestRenewalAndFinishLockRunsInOneOrder(t *testing.T) {
	t.Parallel()
	dsn := linguisticDSN(t)
	ctx := t.Context()
	s, err := postgres.Open(ctx, dsn, postgres.Options{Migrate: true, MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	t0 := time.Now().UTC().Truncate(time.Millisecond)
	ids := []string{"run_a", "run_B"}
	_, err = s.InsertEvents(ctx, []store.NewEvent{{ID: "evt_1", Source: "src", Key: "k", ReceivedAt: t0, Payload: []byte(`{}`),
		Runs: []store.NewRun{{ID: ids[0], Flow: "f", StepID: "s"}, {ID: ids[1], Flow: "f", StepID: "s"}}}})
	require.NoError(t, err)
	_, claimed, err := s.FinishAndClaim(ctx, nil, &store.ClaimParams{Token: "tok", Now: t0, LeaseUntil: t0.Add(time.Hour), Limit: 2})
	require.NoError(t, err)
	require.Len(t, claimed, 2)

	blocker, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer blocker.Close(context.Background())
	tx, err := blocker.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM runs WHERE id = 'run_B' FOR KEY SHARE`)
	require.NoError(t, err)

	watcher, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer watcher.Close(context.Background())
	// waitFor waits until n sessions of the database wait for a lock, or
	// done has an answer.
	waitFor := func(n int, done <-chan error) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if len(done) > 0 {
				return
			}
			var waiting int
			require.NoError(t, watcher.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
			if waiting >= n {
				return
			}
		}
		t.Fatalf("%d sessions never waited for a lock", n)
	}

	renewed := make(chan error, 1)
	go func() {
		renewed <- s.ExtendLeases(ctx, store.ExtendParams{Token: "tok", RunIDs: ids, LeaseUntil: t0.Add(2 * time.Hour), Now: t0})
	}()
	waitFor(1, renewed) // the renewal waits for run_B (holding run_a if it locked it first)

	finished := make(chan error, 1)
	go func() {
		var ps []store.FinishParams
		for _, id := range ids {
			ps = append(ps, store.FinishParams{RunID: id, Token: "tok", Now: t0, State: store.RunSucceeded, Step: 1, RunAttempt: 1, DueAt: t0,
				Attempt: store.Attempt{StepID: "s", System: "sys", Number: 1, Outcome: store.AttemptSucceeded, Status: 200, StartedAt: t0}})
		}
		results, _, err := s.FinishAndClaim(ctx, ps, nil)
		finished <- errors.Join(append(results, err)...)
	}()
	waitFor(2, finished) // the finish waits for run_a, or has finished
	require.NoError(t, tx.Commit(ctx))

	for _, c := range []chan error{renewed, finished} {
		select {
		case err := <-c:
			require.NoError(t, err, "no deadlock")
		case <-time.After(10 * time.Second):
			t.Fatal("stuck")
		}
	}
}

// TestUpgradeToIdentifierCollationKeepsRows applies migrations up to 0010,
// stores rows the way the previous version did, and opens the store, which
// applies 0011: the rows are all there and still found by their keys, and
// events at one receipt time list in byte order of their ids, as on SQLite.
func TestUpgradeToIdentifierCollationKeepsRows(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	slices.Sort(files)
	_, err = conn.Exec(ctx, `CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL)`)
	require.NoError(t, err)
	for _, f := range files {
		v := filepath.Base(f)[:len(filepath.Base(f))-len(".sql")]
		if v >= "0011" {
			break
		}
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, string(body))
		require.NoError(t, err, f)
		_, err = conn.Exec(ctx, `INSERT INTO schema_migrations VALUES ($1, now())`, v)
		require.NoError(t, err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, q := range []string{
		`INSERT INTO events (id, source, key, received_at, payload) VALUES
			('evt_a', 'src', 'k-1', $1, '{}'), ('evt_B', 'src', 'k_1', $1, '{}'), ('evt-a', 'src', 'K1', $1, '{}')`,
		`INSERT INTO runs (id, event_id, flow, state, step, step_id, due_at, created_at, updated_at)
			VALUES ('run_a', 'evt_a', 'f', 'succeeded', 1, 's', $1, $1, $1)`,
		`INSERT INTO run_steps VALUES ('run_a', 0, 's', '{}', $1)`,
		`INSERT INTO attempts (run_id, step_index, step_id, system, number, outcome, status, error, duration_us, started_at)
			VALUES ('run_a', 0, 's', 'crm', 1, 'succeeded', 200, '', 5, $1)`,
		`INSERT INTO fingerprints (id, system, entity, record_id, fields, hash, run_id, hop, chain, created_at, written_at)
			VALUES ('sb_1', 'crm', 'customer', 'R-1', '["email"]', 'h', 'run_a', 1, 'crm', $1, $1)`,
		`INSERT INTO poll_state (source, cursor, next_run_at) VALUES ('jobs', '2026-01-02T03:04:05Z', $1)`,
		`INSERT INTO poll_records VALUES ('jobs', 'J-1', 'v1', $1)`,
		`INSERT INTO system_pauses VALUES ('crm', 'operator', $1)`,
	} {
		_, err = conn.Exec(ctx, q, t0)
		require.NoError(t, err, q)
	}
	_, err = conn.Exec(ctx, `INSERT INTO event_lineage VALUES ('evt_a', '', 1, 'crm', 'run_x');
		INSERT INTO fingerprint_echoes VALUES ('sb_1', 'src', 'eh')`)
	require.NoError(t, err)

	s, err := postgres.Open(ctx, dsn, postgres.Options{Migrate: true, MaxConns: 4})
	require.NoError(t, err)
	defer s.Close()
	requireByteCollation(ctx, t, conn)

	res, err := s.InsertEvents(ctx, []store.NewEvent{{ID: "evt_new", Source: "src", Key: "k_1", ReceivedAt: t0, Payload: []byte(`{}`)}})
	require.NoError(t, err)
	require.Equal(t, []store.InsertResult{{EventID: "evt_B", Duplicate: true}}, res, "the unique index still dedupes")
	evs, err := s.ListEvents(ctx, store.ListEventsParams{Source: "src"})
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		got = append(got, e.ID)
	}
	require.Equal(t, []string{"evt_a", "evt_B", "evt-a"}, got, "newest first, ties by id descending in bytes")
	page, err := s.ListEvents(ctx, store.ListEventsParams{Source: "src", Before: t0, BeforeID: "evt_B"})
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, "evt-a", page[0].ID, "the next page")

	r, err := s.GetRun(ctx, "run_a")
	require.NoError(t, err)
	require.Equal(t, "evt_a", r.EventID)
	outs, err := s.ListOutputs(ctx, "run_a")
	require.NoError(t, err)
	require.Len(t, outs, 1)
	atts, err := s.ListAttempts(ctx, "run_a")
	require.NoError(t, err)
	require.Len(t, atts, 1)
	l, err := s.GetLineage(ctx, "evt_a")
	require.NoError(t, err)
	require.Equal(t, "run_x", l.ParentRun)
	fps, err := s.FindFingerprints(ctx, store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "R-1", Source: "src",
		Since: t0.Add(-time.Minute), UnknownSince: t0.Add(-time.Minute)})
	require.NoError(t, err)
	require.Len(t, fps, 1)
	require.Equal(t, "eh", fps[0].EchoHash)
	ps, ok, err := s.GetPollState(ctx, "jobs")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "2026-01-02T03:04:05Z", ps.Cursor)
	seen, err := s.SeenVersions(ctx, "jobs", []string{"J-1"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"J-1": "v1"}, seen)
	pauses, err := s.ListPauses(ctx)
	require.NoError(t, err)
	require.Len(t, pauses, 1)
}
