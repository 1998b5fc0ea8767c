package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// TestPoisonRunDeadLettered runs the real binary with a run whose step
// never returns, and kills the process (SIGKILL) during that step, once
// per allowed attempt: the step's attempts are lost with their worker, as
// with a run that makes the node run out of memory. The next start must
// dead-letter the run, with a record saying why, without calling the
// system again: not claim it, and crash, for ever.
func TestPoisonRunDeadLettered(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and kills it; skipped with -short")
	}
	const attempts = 2
	bin := buildSwitchboard(t)

	// The system takes the request and never answers (until the caller
	// goes away).
	var calls atomic.Int32
	arrived := make(chan struct{}, attempts+1)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-t.Context().Done():
		}
	}))
	t.Cleanup(sink.Close)

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "sb.db")
	cfgPath := filepath.Join(dir, "switchboard.yaml")
	cfg := fmt.Sprintf(`version: 1
store: sqlite:%s
retry: { base: 10ms, cap: 1s, attempts: %d }
systems:
  sink: { kind: http, base_url: %q, timeout: 1h }
sources:
  orders:
    webhook: {}
    key: .id
flows:
  deliver:
    on: orders
    steps:
      - id: post
        do: sink.request
        with:
          method: '"POST"'
          path: '"/orders"'
          body: '{id: .id}'
`, dbPath, attempts, sink.URL)
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	addr := freeAddr(t)

	for i := range attempts {
		p := startServe(t, bin, cfgPath, addr, filepath.Join(dir, fmt.Sprintf("serve-%d.log", i)))
		if i == 0 {
			resp, err := http.Post("http://"+addr+"/hooks/orders", "application/json", strings.NewReader(`{"id":"poison"}`))
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, 2, resp.StatusCode/100, "acknowledged")
		}
		select {
		case <-arrived: // the step is in its call: kill the node
		case <-time.After(30 * time.Second):
			require.FailNow(t, "the step's call did not arrive", "start %d", i+1)
		}
		killServe(t, p)
	}

	logPath := filepath.Join(dir, "serve-last.log")
	p := startServe(t, bin, cfgPath, addr, logPath)
	require.Eventually(t, func() bool {
		return strings.Contains(tail(logPath, 64<<10), `"msg":"run dead-lettered"`)
	}, 30*time.Second, 20*time.Millisecond, "the run was not dead-lettered on the next start")
	stopServe(t, p)
	require.EqualValues(t, attempts, calls.Load(), "not called again after its attempts were lost")

	st, err := sqlite.Open(t.Context(), dbPath)
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, store.RunDead, runs[0].State)
	require.Contains(t, runs[0].LastError, fmt.Sprintf("attempt %d of %d was lost with its worker", attempts, attempts))
	recorded, err := st.ListAttempts(t.Context(), runs[0].ID)
	require.NoError(t, err)
	require.Len(t, recorded, 1, "the lost attempts left no record; the dead letter stands for the last")
	require.Equal(t, store.AttemptDead, recorded[0].Outcome)
	require.Equal(t, attempts, recorded[0].Number)
}
