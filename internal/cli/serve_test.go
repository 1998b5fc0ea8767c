package cli_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/cli"
)

// TestServeDebugAddr: with --debug-addr, serve answers Go's profiles
// there (a node can be profiled where it runs), apart from the webhook
// listener, which does not.
func TestServeDebugAddr(t *testing.T) {
	t.Parallel()
	cfg := serveConfig(t)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		return ln.Addr().String()
	}
	addr, debug := free(), free()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--config", cfg, "--addr", addr, "--debug-addr", debug}, io.Discard, &stderr, func(string) (string, bool) { return "", false })
	}()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.Eventually(t, func() bool { code, _ := get("http://" + addr + "/readyz"); return code == http.StatusOK }, 10*time.Second, 10*time.Millisecond)
	code, body := get("http://" + debug + "/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, _ = get("http://" + debug + "/debug/pprof/heap?debug=1")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("http://" + addr + "/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "not on the webhook listener")
	cancel()
	require.Equal(t, 0, <-done, stderr.String())
}

// TestServeStoppedDuringStartup: a stop asked for while the node starts
// (SIGTERM during its migrations) is a clean exit, not a failure: a
// supervisor would otherwise count it as a crash.
func TestServeStoppedDuringStartup(t *testing.T) {
	t.Parallel()
	cfg := serveConfig(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the signal came before the store was ready
	var stderr bytes.Buffer
	code := cli.Main(ctx, []string{"serve", "--config", cfg, "--addr", "127.0.0.1:0"}, io.Discard, &stderr, func(string) (string, bool) { return "", false })
	require.Equal(t, 0, code, stderr.String())
	require.Contains(t, stderr.String(), "stopped before it was ready")
}

// serveConfig writes a config of one webhook source and one flow, on a
// SQLite store in the test's directory, and returns its path.
func serveConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`version: 1
store: sqlite:`+filepath.Join(dir, "sb.db")+`
systems: { crm: { kind: http, base_url: "http://127.0.0.1:9" } }
sources: { form: { webhook: {} } }
flows:
  f:
    on: form
    steps: [{ id: a, do: crm.request, with: { path: '"/x"' } }]
`), 0o600))
	return cfg
}
