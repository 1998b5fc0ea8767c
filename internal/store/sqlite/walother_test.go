//go:build unix

package sqlite

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMovedLogOtherProcess: after `rm STORE-wal` (or `rm STORE-*`), a
// second process (a `switchboard systems pause`) opens the database,
// creates a new log at the path and commits into it. Neither the store's
// copy of its moved log (rescue) nor its Close may write over, or delete,
// the other process's commit: the pause is there after the store's clean
// close, and the database file is intact (tried, before: the pause was
// gone, and with the index still shared the database file was malformed).
func TestMovedLogOtherProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// copiedInFull: an automatic checkpoint has just copied the whole
		// log (the state in which another process can start a new one
		// through the shared index; otherwise its first read fails).
		copiedInFull bool
		removeIndex  bool
		// commitBefore/commitAfter: the store tries a commit (refused, and
		// its log copied) before or after the other process's commit.
		commitBefore, commitAfter bool
	}{
		{name: "log copied in full, closed", copiedInFull: true},
		{name: "log copied in full, commit after the other's", copiedInFull: true, commitAfter: true},
		{name: "log and index removed, commit before the other's", removeIndex: true, commitBefore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "test.db")
			s, err := Open(t.Context(), path)
			require.NoError(t, err)
			require.NoError(t, insert(t, s, 10, "before"))
			if tc.copiedInFull {
				for i := 0; ; i++ {
					require.Less(t, i, 1000, "no automatic checkpoint")
					ids := make([]string, 10)
					for j := range ids {
						ids[j] = fmt.Sprintf("e%d-%d", i, j)
					}
					require.NoError(t, insert(t, s, 4000, ids...))
					if frames, copied := shmFrames(t, path); frames > 0 && copied == frames {
						break
					}
				}
			}

			require.NoError(t, os.Remove(path+"-wal"))
			if tc.removeIndex {
				require.NoError(t, os.Remove(path+"-shm"))
			}
			if tc.commitBefore {
				err := insert(t, s, 10, "after")
				require.ErrorIs(t, err, errLogMoved)
				require.ErrorContains(t, err, "the commits it held are copied into the database file")
			}
			runIndexHelper(t, "pause", path)
			if tc.commitAfter {
				err := insert(t, s, 10, "after")
				require.ErrorIs(t, err, errLogMoved)
				require.ErrorIs(t, err, errOtherLog)
			}
			require.ErrorIs(t, s.Close(), errFilesLeft, "said at shutdown")

			// Checked by another process: this one may keep a connection
			// open (see Close), and a store opened here would share its index.
			runIndexHelper(t, "check", path)
		})
	}
}

// shmFrames reads, from the log's index, the number of frames in the log
// (mxFrame) and how many of them have been copied into the database file
// (nBackfill): https://sqlite.org/walformat.html, the wal-index header.
func shmFrames(t *testing.T, path string) (frames, copied uint32) {
	t.Helper()
	b, err := os.ReadFile(path + "-shm")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), 100)
	return binary.NativeEndian.Uint32(b[16:]), binary.NativeEndian.Uint32(b[96:])
}

// TestMovedLogAndIndexOtherProcessAtClose: after `rm STORE-*`, another
// process commits into a new log before this store tries a write. Its
// commit was made on a database without this store's latest ones, so
// Close copies this store's log and lets SQLite delete the other (see
// Close), and its error says so, as a notice, not as a failed copy.
func TestMovedLogAndIndexOtherProcessAtClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, insert(t, s, 10, "before"))
	require.NoError(t, os.Remove(path+"-wal"))
	require.NoError(t, os.Remove(path+"-shm"))
	runIndexHelper(t, "pause", path)

	err = s.Close()
	require.ErrorContains(t, err, "another process committed into a new log at this path")
	require.NotContains(t, err.Error(), "failed")

	back, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer back.Close()
	_, err = back.GetEvent(t.Context(), "before")
	require.NoError(t, err, "this store's commits kept")
}
