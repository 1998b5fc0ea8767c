//go:build unix

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// TestMovedIndexRefusesCommits: with the log's index (-shm) removed or
// replaced, the next process to open the database would build an index of
// its own (see sameIndex). The store commits nothing more; readers read on.
func TestMovedIndexRefusesCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range fileMoves {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, path, err := refusedAfterMove(t, "-shm", tc.move, errIndexMoved)
			require.ErrorContains(t, err, path+"-shm")
			require.ErrorContains(t, err, "restarted")
			require.ErrorIs(t, s.Ping(t.Context()), errIndexMoved)
		})
	}
}

// TestMovedIndexOtherProcess: after `rm STORE-shm`, a second process (a
// `switchboard systems pause`) opens the database, builds a new index and
// commits through it. This store's commits are refused, and its Close
// leaves the log to the next open: a clean close would copy the log into
// the database file by this process's stale index and delete it, and the
// other process's commit with it (tried: the pause was gone).
func TestMovedIndexOtherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, insert(t, s, 10, "before"))

	require.NoError(t, os.Remove(path+"-shm"))
	runIndexHelper(t, "pause", path)
	err = insert(t, s, 10, "after")
	require.ErrorIs(t, err, errIndexMoved)
	require.ErrorIs(t, s.Close(), errFilesLeft, "said at shutdown")

	// Checked by another process: this one keeps a connection open (see Close),
	// and a store opened here would share its index.
	runIndexHelper(t, "check", path)
}

// runIndexHelper runs TestIndexHelperProcess in a new process of the test
// binary, which fails the test if it does.
func runIndexHelper(t *testing.T, mode, path string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestIndexHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_INDEX_HELPER="+mode, "SWITCHBOARD_INDEX_DB="+path)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper %s: %s", mode, out)
}

// TestIndexHelperProcess is TestMovedIndexOtherProcess's second process.
func TestIndexHelperProcess(t *testing.T) {
	mode, path := os.Getenv("SWITCHBOARD_INDEX_HELPER"), os.Getenv("SWITCHBOARD_INDEX_DB")
	if mode == "" {
		t.Skip("run by TestMovedIndexOtherProcess")
	}
	if err := indexHelper(t.Context(), mode, path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func indexHelper(ctx context.Context, mode, path string) error {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	switch mode {
	case "pause":
		_, err := s.PauseSystem(ctx, store.PauseParams{System: "crm", Reason: store.OperatorPause, Now: time.Now()})
		return err
	case "check":
		if _, err := s.GetEvent(ctx, "before"); err != nil {
			return fmt.Errorf("event before: %w", err)
		}
		if _, err := s.GetEvent(ctx, "after"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("event after: %v, want not found", err)
		}
		ps, err := s.ListPauses(ctx)
		if err != nil {
			return err
		}
		if len(ps) != 1 || ps[0].System != "crm" {
			return fmt.Errorf("pauses: %+v, want the other process's pause of crm", ps)
		}
		var ok string
		if err := s.r.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			return fmt.Errorf("integrity_check: %q, %v", ok, err)
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// TestMovedLogAndIndexCopiedAtClose: with both the log and its index
// removed (`rm STORE-*`), the log this store has open is its own, so Close
// copies it into the database file as before (see Close): a commit no one
// tried since, so not yet rescued, survives.
func TestMovedLogAndIndexCopiedAtClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	require.NoError(t, insert(t, s, 10, "before"))
	require.NoError(t, os.Remove(path+"-wal"))
	require.NoError(t, os.Remove(path+"-shm"))
	require.ErrorIs(t, s.Close(), errFilesLeft, "said at shutdown")

	copied := filepath.Join(t.TempDir(), "copy.db")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(copied, b, 0o600))
	c, err := Open(t.Context(), copied)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.GetEvent(t.Context(), "before")
	require.NoError(t, err, "an acknowledged event lost")
}
