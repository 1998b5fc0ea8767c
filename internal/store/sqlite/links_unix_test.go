//go:build unix

package sqlite

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHardLinkRefused: a process that opened the database by a second name
// would keep a log of its own (see oneName). Both names are refused, by any
// process, until one is removed.
func TestHardLinkRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	link := filepath.Join(dir, "other.db")
	require.NoError(t, os.Link(path, link))
	for _, name := range []string{link, path} {
		_, err := Open(t.Context(), name)
		require.ErrorContains(t, err, "has 2 names (hard links)", name)
	}
	require.NoError(t, os.Remove(link))
	s, err = Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}
