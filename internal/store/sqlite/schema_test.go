package sqlite

import (
	"database/sql"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// params returns as many NULL arguments as q has parameters ("?" or "?N").
func params(q string) []any {
	n := strings.Count(q, "?")
	if m := regexp.MustCompile(`\?(\d+)`).FindAllStringSubmatch(q, -1); m != nil {
		n = 0
		for _, p := range m {
			k, _ := strconv.Atoi(p[1])
			n = max(n, k)
		}
	}
	return make([]any, n)
}

// explain returns the opcodes of q's bytecode.
func explain(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(`EXPLAIN `+q, params(q)...)
	require.NoError(t, err, q)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var ops []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		ops = append(ops, vals[1].(string))
	}
	require.NoError(t, rows.Err())
	return ops
}

// The statements run for every event and every delivery build no temporary
// b-tree: an IN list of three constants in a CHECK or a partial index's
// predicate made SQLite open and free one at each execution (migration
// 0013), about a tenth of a delivered event's CPU. (The claim builds three,
// for the ids it picks and returns: one each per claim of many runs; its
// predicate is the index's, which TestQueueQueriesUseRunnableIndex holds.)
func TestHotStatementsBuildNoTemporaryTables(t *testing.T) {
	s := openTest(t)
	for _, q := range []string{qInsEvent, qInsRun, qInsLineage, qUpdRun, qInsAttempt, qInsStep} {
		require.NotContains(t, explain(t, s.r, q), "OpenEphemeral", q)
	}
}

// The queue's queries read the partial index runs_runnable: a query whose
// WHERE no longer matches the index's predicate (spelled differently) makes
// SQLite scan every run the store keeps, silently.
func TestQueueQueriesUseRunnableIndex(t *testing.T) {
	s := openTest(t)
	for _, q := range []string{qClaim, qNextDue, qQueueStats, qReleaseLeases, qWakeHeld} {
		rows, err := s.r.Query(`EXPLAIN QUERY PLAN `+q, params(q)...)
		require.NoError(t, err, q)
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &notused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		joined := strings.Join(plan, "; ")
		require.Contains(t, joined, "INDEX runs_runnable", q)
		require.NotRegexp(t, `SCAN runs(;|$)`, joined, q) // every run read
	}
}

// A store made before migration 0013 keeps its rows and its constraints
// once the migration rewrites them.
func TestNoINListsMigrationKeepsRowsAndChecks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	require.NoError(t, err)
	names, err := fs.Glob(migrations, "migrations/*.sql")
	require.NoError(t, err)
	sort.Strings(names)
	_, err = old.Exec(`CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`)
	require.NoError(t, err)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		if version >= "0013" {
			break
		}
		body, err := migrations.ReadFile(name)
		require.NoError(t, err)
		_, err = old.Exec(string(body))
		require.NoError(t, err, name)
		_, err = old.Exec(`INSERT INTO schema_migrations VALUES (?, 0)`, version)
		require.NoError(t, err)
	}
	now := time.Now()
	_, err = old.Exec(`INSERT INTO events (id, source, key, received_at, payload) VALUES ('e1', 's', 'k', 1, '{}')`)
	require.NoError(t, err)
	_, err = old.Exec(`INSERT INTO event_lineage (event_id, outcome, hop, chain, parent_run) VALUES ('e1', 'echo', 1, 'c', '')`)
	require.NoError(t, err)
	for i, state := range []string{"pending", "running", "retrying", "succeeded", "dead"} {
		_, err = old.Exec(`INSERT INTO runs (id, event_id, flow, state, due_at, created_at, updated_at) VALUES (?, 'e1', 'f', ?, ?, 1, 1)`,
			"r_"+state, state, micros(now)-int64(i))
		require.NoError(t, err)
	}
	_, err = old.Exec(`INSERT INTO attempts (run_id, step_index, step_id, system, number, outcome, status, error, duration_us, started_at)
		VALUES ('r_dead', 0, 'a', 'x', 1, 'dead', 500, 'boom', 1, 1)`)
	require.NoError(t, err)
	require.NoError(t, old.Close())

	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer s.Close()
	var check string
	require.NoError(t, s.r.QueryRow(`PRAGMA integrity_check`).Scan(&check))
	require.Equal(t, "ok", check)
	var left int
	require.NoError(t, s.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE sql LIKE '% IN (%'`).Scan(&left))
	require.Zero(t, left, "an IN list is left in the schema")
	// The writer ran the migration and runs the hot statements for as long
	// as the process lives: its own copy of the schema must be the new one
	// too. The readers, opened after the migration, read it from the file;
	// the writer rereads it only because of writable_schema = RESET (its own
	// DROP and CREATE INDEX change only the index in its copy).
	for _, q := range []string{qInsEvent, qInsRun, qInsLineage, qUpdRun, qInsAttempt, qInsStep} {
		require.NotContains(t, explain(t, s.w, q), "OpenEphemeral", q)
	}

	stats, err := s.QueueStats(t.Context())
	require.NoError(t, err)
	require.Len(t, stats, 1)
	require.Equal(t, store.FlowStats{Flow: "f", Waiting: 2, Running: 1, Dead: 1, OldestWaiting: fromMicros(1)}, stats[0])

	// The constraints still hold, on both connections.
	for _, db := range []*sql.DB{s.w, s.r} {
		_, err = db.Exec(`UPDATE runs SET state = 'bogus' WHERE id = 'r_pending'`)
		require.ErrorContains(t, err, "CHECK constraint failed")
		_, err = db.Exec(`UPDATE attempts SET outcome = 'bogus'`)
		require.ErrorContains(t, err, "CHECK constraint failed")
		_, err = db.Exec(`UPDATE event_lineage SET outcome = 'bogus'`)
		require.ErrorContains(t, err, "CHECK constraint failed")
	}

	// The queue works off the rebuilt index: every unfinished run is
	// claimable (the running one's lease is its due time, past).
	_, claimed, err := s.FinishAndClaim(t.Context(), nil, &store.ClaimParams{Limit: 10, Token: "t", Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	var ids []string
	for _, c := range claimed {
		ids = append(ids, c.Run.ID)
	}
	sort.Strings(ids)
	require.Equal(t, []string{"r_pending", "r_retrying", "r_running"}, ids)
}
