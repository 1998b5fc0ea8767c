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
