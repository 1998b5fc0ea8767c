package app_test

import (
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// compileWithStore compiles deliverConfig with its store at storePath.
func compileWithStore(t *testing.T, storePath string) *flow.Plan {
	t.Helper()
	yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+storePath, 1)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "switchboard.yaml"), []byte(yamlText), func(name string) (string, bool) {
		v, ok := map[string]string{"DOWNSTREAM_URL": "http://127.0.0.1:1", "E2E_SECRET": e2eSecret}[name]
		return v, ok
	})
	require.NoError(t, err)
	plan, err := app.Compile(cfg)
	require.NoError(t, err)
	return plan
}

// TestStoreLockErrors: a second node on a SQLite file is refused as such,
// but a data directory that is missing or unwritable is named for what it
// is, not blamed on another process the operator would then hunt for.
func TestStoreLockErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plan := compileWithStore(t, filepath.Join(dir, "sb.db"))
	first, err := app.NewServer(t.Context(), plan, app.Options{})
	require.NoError(t, err)
	defer first.Close()
	_, err = app.NewServer(t.Context(), plan, app.Options{})
	require.ErrorContains(t, err, "in use by another switchboard process")
	// The same database by another name: a symbolic link to it.
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(filepath.Join(dir, "sb.db"), link))
	_, err = app.NewServer(t.Context(), compileWithStore(t, link), app.Options{})
	require.ErrorContains(t, err, "in use by another switchboard process")
	// A hard link: its lock file is another, but the store refuses a file
	// with two names (see sqlite.oneName).
	hard := filepath.Join(dir, "hard.db")
	require.NoError(t, os.Link(filepath.Join(dir, "sb.db"), hard))
	_, err = app.NewServer(t.Context(), compileWithStore(t, hard), app.Options{})
	require.ErrorContains(t, err, "has 2 names (hard links)")
	require.NoError(t, os.Remove(hard))
	// A link to a database not created yet: first started through the
	// link, then by its real path.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	freshLink := filepath.Join(t.TempDir(), "fresh-link.db")
	require.NoError(t, os.Symlink(fresh, freshLink))
	second, err := app.NewServer(t.Context(), compileWithStore(t, freshLink), app.Options{})
	require.NoError(t, err)
	defer second.Close()
	_, err = app.NewServer(t.Context(), compileWithStore(t, fresh), app.Options{})
	require.ErrorContains(t, err, "in use by another switchboard process")

	_, err = app.NewServer(t.Context(), compileWithStore(t, filepath.Join(dir, "missing", "sb.db")), app.Options{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "another switchboard process")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// readyz returns the status of GET /readyz.
func readyz(t *testing.T, ts *testServer) int {
	t.Helper()
	resp, err := http.Get(ts.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRemovedStoreFileRefusesWebhooks: a SQLite file removed (or moved
// away) under a running node would take every later commit with it, since
// SQLite writes on to the file it has open: webhooks acknowledged then are
// gone at the next start. Its write-ahead log alone removed, the commits
// since the last checkpoint would be lost at a crash. The node answers 503
// instead, and /readyz too.
func TestRemovedStoreFileRefusesWebhooks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		removed []string // suffixes of the store's path
		stop    string   // what the server's stop says
	}{
		{"database file", []string{"", "-wal", "-shm"}, "what it held, every commit made, is copied to"},
		{"write-ahead log", []string{"-wal"}, "the next start recovers every commit in them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			down := newDownstream(t, 0, func(map[string]any, []downstreamRequest) downstreamReply {
				return downstreamReply{Status: http.StatusOK}
			})
			dir := t.TempDir()
			path := filepath.Join(dir, "sb.db")
			yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+path, 1)
			// Its stop says so too, not a clean exit.
			ts := startServerStopping(t, yamlText, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret},
				app.Options{PollInterval: 20 * time.Millisecond}, func(err error) { require.ErrorContains(t, err, tc.stop) })
			require.Equal(t, http.StatusAccepted, ts.post(t, "orders", `{"id":"before","mode":"ok"}`, true).Status)
			require.Equal(t, http.StatusOK, readyz(t, ts))

			for _, suffix := range tc.removed {
				require.NoError(t, os.Remove(path+suffix))
			}
			res := ts.post(t, "orders", `{"id":"after","mode":"ok"}`, true)
			require.Equal(t, http.StatusServiceUnavailable, res.Status, res.Raw)
			require.NotEmpty(t, res.Header.Get("Retry-After"))
			// Within the second a probe's result is reused for.
			require.Eventually(t, func() bool { return readyz(t, ts) == http.StatusServiceUnavailable }, 5*time.Second, 50*time.Millisecond)
			// An operator's write outside a transaction (systems pause) is
			// refused too, not reported done into the lost file.
			_, err := ts.Server.Store.PauseSystem(t.Context(), store.PauseParams{System: "downstream", Reason: store.OperatorPause, Now: time.Now()})
			require.ErrorContains(t, err, "removed, moved or replaced")
		})
	}
}

// TestReadyzSharesProbes: /readyz is on the public listener, and each probe
// of a SQLite store is a commit (an fsync) through the writer that ingest
// needs. A burst of requests shares one probe instead of queueing a commit
// each ahead of the webhooks' group commit.
func TestReadyzSharesProbes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sb.db")
	yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+path, 1)
	ts := startServer(t, yamlText, map[string]string{"DOWNSTREAM_URL": "http://127.0.0.1:1", "E2E_SECRET": e2eSecret}, app.Options{})

	const burst = 50
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			resp, err := http.Get(ts.URL + "/readyz")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		require.Equal(t, http.StatusOK, code)
	}

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var probes int
	require.NoError(t, db.QueryRow(`SELECT probes FROM readiness`).Scan(&probes))
	// One probe, or two should the burst straddle a probe's end and the
	// second after it.
	require.LessOrEqual(t, probes, 2, "%d requests made %d commits", burst, probes)
}
