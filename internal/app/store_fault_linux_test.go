//go:build linux

package app_test

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/logtest"
)

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
	logs := &logtest.Buffer{}
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
	// Long enough for the store to be probed again (a result serves the
	// requests of the next second).
	require.Never(t, func() bool { return readyz(t, ts) != http.StatusServiceUnavailable }, 1500*time.Millisecond, 50*time.Millisecond,
		"/readyz while the disk is still full")
	// One line for the spell, not one per probe (a load balancer probes
	// every second or so).
	require.Equal(t, 1, strings.Count(logs.String(), "readiness: the store cannot take writes"), logs.String())

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool { return readyz(t, ts) == http.StatusOK }, 5*time.Second, 50*time.Millisecond, "/readyz once space is back")
	require.Regexp(t, `"msg":"readiness: the store takes writes again","failed_probes":([2-9]|\d\d)`, logs.String())
	require.Equal(t, http.StatusAccepted, ts.post(t, "orders", body, true).Status)
	require.Eventually(t, func() bool { return len(down.keys()) == 2 }, 10*time.Second, 10*time.Millisecond)
}
