package sqlite

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// insert commits one event per id, each with a payload of pad bytes.
func insert(t testing.TB, s *Store, pad int, ids ...string) error {
	t.Helper()
	evs := make([]store.NewEvent, len(ids))
	for i, id := range ids {
		evs[i] = store.NewEvent{ID: id, Source: "s", Key: id, Payload: []byte(`{"pad":"` + strings.Repeat("x", pad) + `"}`)}
	}
	_, err := s.InsertEvents(t.Context(), evs)
	return err
}

// fileMoves are the ways a file beside the database goes under a running
// store: removed, or replaced by another.
var fileMoves = []struct {
	name string
	move func(file string) error
}{
	{"removed", os.Remove},
	{"replaced", func(file string) error { return os.Rename(file+".new", file) }},
}

// refusedAfterMove opens a store at a new path, commits event "before",
// moves the file path+suffix, and checks that a commit and an operator's
// write are then refused with want, while readers read on. It returns the
// store (closed when the test ends), its path and the commit's error.
func refusedAfterMove(t *testing.T, suffix string, move func(string) error, want error) (*Store, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, insert(t, s, 10, "before"))
	require.NoError(t, os.WriteFile(path+suffix+".new", nil, 0o600))

	require.NoError(t, move(path+suffix))
	commitErr := insert(t, s, 10, "after")
	require.ErrorIs(t, commitErr, want)
	_, err = s.PauseSystem(t.Context(), store.PauseParams{System: "x", Reason: store.OperatorPause, Now: time.Now()})
	require.ErrorIs(t, err, want)
	_, err = s.GetEvent(t.Context(), "before")
	require.NoError(t, err, "readers read on")
	return s, path, commitErr
}

// TestMovedLogRefusesCommits: with its write-ahead log removed or replaced,
// SQLite would go on committing into the log it has open, which a crash
// loses. The store commits nothing more, and copies what the log holds
// into the database file, so that what was acknowledged survives a crash.
func TestMovedLogRefusesCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range fileMoves {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, path, err := refusedAfterMove(t, "-wal", tc.move, errLogMoved)
			require.ErrorContains(t, err, "copied into the database file")
			_, err = s.AcquireLease(t.Context(), store.LeaseParams{Name: "x", Holder: "h", Now: time.Now(), Until: time.Now().Add(time.Minute)})
			require.ErrorIs(t, err, errLogMoved)

			// What a crash leaves: the database file without the log.
			crashed := filepath.Join(t.TempDir(), "crashed.db")
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(crashed, b, 0o600))
			c, err := Open(t.Context(), crashed)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.GetEvent(t.Context(), "before")
			require.NoError(t, err, "an acknowledged event lost")
			_, err = c.GetEvent(t.Context(), "after")
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

// TestLogKeepsItsFile: SQLite's own work on the log (checkpoints, which
// rewind it, TRUNCATE, which empties it, a connection closed by
// database/sql) never makes it another file, so it never stops commits.
func TestLogKeepsItsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer s.Close()

	// ~6 MB of events: past the automatic checkpoint (1,000 pages).
	for i := range 15 {
		ids := make([]string, 100)
		for j := range ids {
			ids[j] = fmt.Sprintf("e%d-%d", i, j)
		}
		require.NoError(t, insert(t, s, 4<<10, ids...))
	}
	other, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	defer other.Close()
	var busy, frames, copied int
	require.NoError(t, other.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied))
	require.Zero(t, busy)
	fi, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	require.Zero(t, fi.Size())
	require.NoError(t, other.Close())
	require.NoError(t, insert(t, s, 10, "after-truncate"))

	// database/sql closes a connection it finds interrupted; were the
	// writer the database's last, SQLite would delete the log with it.
	c, err := s.w.Conn(t.Context())
	require.NoError(t, err)
	require.ErrorIs(t, c.Raw(func(any) error { return driver.ErrBadConn }), driver.ErrBadConn)
	_ = c.Close() // already closed: database/sql dropped it
	_, err = os.Stat(path + "-wal")
	require.NoError(t, err, "the log went with the writer")
	require.NoError(t, insert(t, s, 10, "after-reconnect"))
}
