package app_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
// gone at the next start. The node answers 503 instead, and /readyz too.
func TestRemovedStoreFileRefusesWebhooks(t *testing.T) {
	t.Parallel()
	down := newDownstream(t, 0, func(map[string]any, []downstreamRequest) downstreamReply {
		return downstreamReply{Status: http.StatusOK}
	})
	dir := t.TempDir()
	path := filepath.Join(dir, "sb.db")
	yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+path, 1)
	ts := startServer(t, yamlText, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret},
		app.Options{PollInterval: 20 * time.Millisecond})
	require.Equal(t, http.StatusAccepted, ts.post(t, "orders", `{"id":"before","mode":"ok"}`, true).Status)
	require.Equal(t, http.StatusOK, readyz(t, ts))

	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		require.NoError(t, os.Remove(f))
	}
	res := ts.post(t, "orders", `{"id":"after","mode":"ok"}`, true)
	require.Equal(t, http.StatusServiceUnavailable, res.Status, res.Raw)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	require.Equal(t, http.StatusServiceUnavailable, readyz(t, ts))
	// An operator's write outside a transaction (systems pause) is refused
	// too, not reported done into the lost file.
	_, err := ts.Server.Store.PauseSystem(t.Context(), store.PauseParams{System: "downstream", Reason: store.OperatorPause, Now: time.Now()})
	require.ErrorContains(t, err, "removed, moved or replaced")
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends; the test is skipped where mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "fill: %v", err)
			return
		}
	}
}

// TestFullDiskAnswers503AndRecovers fills the file system under a running
// SQLite node: webhooks are answered 503 with Retry-After (never 2xx),
// /readyz turns 503 so a balancer stops sending, and once space is back
// both recover without a restart, and the refused event, sent again, is
// delivered.
func TestFullDiskAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "8m")
	down := newDownstream(t, 0, func(map[string]any, []downstreamRequest) downstreamReply {
		return downstreamReply{Status: http.StatusOK}
	})
	yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+filepath.Join(dir, "sb.db"), 1)
	logs := &lockedLog{}
	ts := startServer(t, yamlText, map[string]string{"DOWNSTREAM_URL": down.URL, "E2E_SECRET": e2eSecret},
		app.Options{PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.Equal(t, http.StatusAccepted, ts.post(t, "orders", `{"id":"before","mode":"ok"}`, true).Status)
	require.Eventually(t, func() bool { return len(down.keys()) == 1 }, 10*time.Second, 10*time.Millisecond)

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	body := `{"id":"during","mode":"ok","pad":"` + strings.Repeat("x", 8<<10) + `"}`
	res := ts.post(t, "orders", body, true)
	require.Equal(t, http.StatusServiceUnavailable, res.Status, res.Raw)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	require.Equal(t, http.StatusServiceUnavailable, readyz(t, ts), "/readyz while the disk is full")
	require.Equal(t, http.StatusServiceUnavailable, readyz(t, ts), "probed again")
	// One line for the spell, not one per probe (a load balancer probes
	// every second or so).
	require.Equal(t, 1, strings.Count(logs.String(), "readiness: the store cannot take writes"), logs.String())

	require.NoError(t, os.Remove(filler))
	require.Equal(t, http.StatusOK, readyz(t, ts), "/readyz once space is back")
	require.Contains(t, logs.String(), `"msg":"readiness: the store takes writes again","failed_probes":2`)
	require.Equal(t, http.StatusAccepted, ts.post(t, "orders", body, true).Status)
	require.Eventually(t, func() bool { return len(down.keys()) == 2 }, 10*time.Second, 10*time.Millisecond)
}

// lockedLog is a log destination the server's goroutines write to while
// the test reads it.
type lockedLog struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
