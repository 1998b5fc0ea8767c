package sqlite

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRemovedFileIsCopied: the database file removed under a running store
// (an `rm` of the data directory) holds every event acknowledged so far,
// and only this process can still read it. The store writes it to a file
// beside the path, once, at the first refused write or else at Close, and
// names it: moved back to the path, it is the whole store.
func TestRemovedFileIsCopied(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		removed []string // suffixes of the path
		write   bool     // a write is tried (and refused) before Close
	}{
		{"file, then a write", []string{""}, true},
		{"file, log and index, then a write", []string{"", "-wal", "-shm"}, true},
		{"file, log and index, no write before the stop", []string{"", "-wal", "-shm"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "test.db")
			s, err := Open(t.Context(), path)
			require.NoError(t, err)
			require.NoError(t, insert(t, s, 10, "a", "b"))
			require.NoError(t, insert(t, s, 10, "c")) // in the log only: no checkpoint since
			for _, suffix := range tc.removed {
				require.NoError(t, os.Remove(path+suffix))
			}
			copied := regexp.MustCompile(`copied to (\S+recovered-\S+):`)
			var named string
			if tc.write {
				err := insert(t, s, 10, "refused")
				require.ErrorIs(t, err, errFileMoved)
				m := copied.FindStringSubmatch(err.Error())
				require.NotNil(t, m, "the copy named: %v", err)
				named = m[1]
				err = insert(t, s, 10, "refused too")
				require.ErrorContains(t, err, "copied to "+named, "copied once")
			}
			err = s.Close()
			require.ErrorIs(t, err, errFileMoved, "the stop says so")
			m := copied.FindStringSubmatch(err.Error())
			require.NotNil(t, m, "the copy named: %v", err)
			if named != "" {
				require.Equal(t, named, m[1])
			}
			named = m[1]

			// Moved back to the path, as the message says.
			require.ErrorContains(t, err, "remove "+path+"-wal and "+path+"-shm if they are there")
			for _, suffix := range []string{"-wal", "-shm"} {
				if err := os.Remove(path + suffix); !os.IsNotExist(err) {
					require.NoError(t, err)
				}
			}
			require.NoError(t, os.Rename(named, path))
			back, err := Open(t.Context(), path)
			require.NoError(t, err)
			defer back.Close()
			for _, id := range []string{"a", "b", "c"} {
				_, err := back.GetEvent(t.Context(), id)
				require.NoError(t, err, id)
			}
			_, err = back.GetEvent(t.Context(), "refused")
			require.Error(t, err)
		})
	}
}
