package postgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
