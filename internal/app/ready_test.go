package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// A probe the store never answers (a commit stuck in an fsync: SQLite's
// store commits without a context) is given up after readyProbeTimeout:
// /readyz answers 503 and the spell is logged, rather than every request
// waiting on it for as long as the disk stalls.
func TestReadinessGivesUpOnAStuckProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		stalled := make(chan struct{})
		defer close(stalled) // the disk comes back: the probe's goroutine ends
		rd := &readiness{
			probe: func(context.Context) error { <-stalled; return nil }, // ignores its context
			log:   slog.New(slog.NewJSONHandler(&logs, nil)),
		}
		start := time.Now()
		err := rd.check(context.Background()) // a client that waits as long as it takes
		require.ErrorContains(t, err, "the store did not commit within 10s")
		require.Equal(t, readyProbeTimeout, time.Since(start))
		require.Equal(t, 1, strings.Count(logs.String(), "readiness: the store cannot take writes"), logs.String())

		// The next probe, a second later, is not stuck behind the first.
		time.Sleep(readyFresh)
		require.Error(t, rd.check(context.Background()))
		require.Equal(t, readyFresh+2*readyProbeTimeout, time.Since(start))
	})
}

// A probe outlives the requests waiting for it (its result is shared), so
// Server.Close waits for it before closing the store, and starts no other:
// a probe running into a closed store logged a false "cannot take writes"
// at shutdown, or committed after the store's lock was let go.
func TestReadinessCloseWaitsForTheProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		commit := make(chan struct{})
		var probes, done int
		rd := &readiness{
			probe: func(context.Context) error { probes++; <-commit; done++; return nil },
			log:   slog.New(slog.NewJSONHandler(&logs, nil)),
		}
		ctx, leave := context.WithCancel(context.Background())
		go func() { _ = rd.check(ctx) }()
		synctest.Wait()
		leave() // the balancer gives up on the request; its probe goes on
		synctest.Wait()
		require.Equal(t, 1, probes)

		closed := make(chan struct{})
		go func() { rd.close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("close returned while a probe was running")
		default:
		}
		close(commit)
		<-closed
		require.Equal(t, 1, done, "the probe ended before close returned")

		time.Sleep(readyFresh)
		require.ErrorIs(t, rd.check(context.Background()), errReadinessClosed)
		require.Equal(t, 1, probes, "a probe after close")
		require.Empty(t, logs.String())
	})
}
