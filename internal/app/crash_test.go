package app_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// TestCrashRecovery runs the real binary, kills it with SIGKILL in the
// middle of a burst of webhooks while deliveries are in flight, restarts it
// on the same SQLite file, lets the clients re-post what was not
// acknowledged (as real webhook senders do), and checks the promises of
// ARCHITECTURE.md against what the downstream saw and what the store holds:
//
//	(a) Durable before acknowledged: every event that got a 2xx, before or
//	    after the crash, reached the downstream, i.e. at least one request
//	    under its Idempotency-Key was answered 2xx. Events acknowledged
//	    before the kill are never re-posted, so they can only arrive if the
//	    2xx was given after the commit.
//	(b) Idempotent delivery: an Idempotency-Key is sent more than once only
//	    if its step was in flight when the process died: its result was
//	    never committed, so the restarted node runs the step again with the
//	    SAME key, and the downstream is expected to deduplicate (that is what
//	    the key is for). The downstream here does: it answers a repeated key
//	    200 but counts its effect once. So: effects == number of distinct
//	    events; every repeated key was sent exactly once by the killed
//	    process and once by the restarted one; and at most `workers` keys
//	    repeat, because no more steps than workers run at once.
//	(c) The store holds exactly the posted events, once each (re-posts of
//	    events stored before the kill were duplicates), and every run
//	    succeeded; the restarted process stops cleanly on SIGTERM.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and kills it under load; skipped with -short")
	}
	const (
		events    = 2000
		producers = 32
		killAfter = 800 // acknowledgments before the kill
		workers   = 8
		source    = "orders"
		flowName  = "deliver"
		stepID    = "post"
	)

	bin := buildSwitchboard(t)
	// The downstream deduplicates by Idempotency-Key: a repeat is answered
	// 200 like the first request, and only the first has an effect.
	down := newDownstream(t, 3*time.Millisecond, func(_ map[string]any, earlier []downstreamRequest) downstreamReply {
		for _, r := range earlier {
			if r.Status/100 == 2 {
				return downstreamReply{Status: http.StatusOK, Body: map[string]any{"duplicate": true}}
			}
		}
		return downstreamReply{Status: http.StatusOK, Body: map[string]any{"duplicate": false}}
	})

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "sb.db")
	cfgPath := filepath.Join(dir, "switchboard.yaml")
	cfg := fmt.Sprintf(`version: 1
store: sqlite:%s
workers: %d
retry: { base: 10ms, cap: 1s, attempts: 30 }
systems:
  sink: { kind: http, base_url: %q, timeout: 20s }
sources:
  %s:
    webhook: {}
    key: .id
flows:
  %s:
    on: %s
    steps:
      - id: %s
        do: sink.request
        with:
          method: '"POST"'
          path: '"/orders"'
          body: '{id: .id}'
`, dbPath, workers, down.URL, source, flowName, source, stepID)
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	ids := make([]string, events)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt-%04d", i)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = producers
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	addr := freeAddr(t)
	hookURL := "http://" + addr + "/hooks/" + source
	// post sends one event and reports whether it was acknowledged (2xx) and
	// whether as a duplicate.
	post := func(i int) (acked, duplicate bool) {
		body := fmt.Sprintf(`{"id":%q,"n":%d}`, ids[i], i)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, hookURL, strings.NewReader(body))
		if err != nil {
			return false, false
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false, false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode/100 == 2, resp.Header.Get("Switchboard-Duplicate") == "true"
	}

	// Phase 1: post every event once, concurrently; kill -9 after killAfter
	// acknowledgments. Posts in flight at that moment fail or were answered
	// just before; the rest are not sent.
	acked := make([]atomic.Bool, events)
	p1 := startServe(t, bin, cfgPath, addr, filepath.Join(dir, "serve-1.log"))
	var (
		acks     atomic.Int64
		killed   atomic.Bool
		killOnce sync.Once
	)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for i := range jobs {
				if killed.Load() {
					continue
				}
				if ok, _ := post(i); ok {
					acked[i].Store(true)
					if acks.Add(1) == killAfter {
						killOnce.Do(func() {
							killed.Store(true)
							_ = p1.cmd.Process.Kill()
						})
					}
				}
			}
		})
	}
	for i := range events {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	require.True(t, killed.Load(), "only %d of %d events were acknowledged; the kill never happened", acks.Load(), events)
	<-p1.exited
	var exitErr *exec.ExitError
	require.ErrorAs(t, p1.err, &exitErr, "the first process should have died of SIGKILL")
	ackedBeforeKill := int(acks.Load())
	deliveredBeforeKill := len(down.keys())

	// Phase 2: restart on the same store and address; re-post every event
	// not acknowledged, each until it is (clients retry).
	restartAt := time.Now()
	p2 := startServe(t, bin, cfgPath, addr, filepath.Join(dir, "serve-2.log"))
	var reposted, duplicates, failed atomic.Int64
	jobs = make(chan int)
	deadline := time.Now().Add(60 * time.Second)
	for range producers {
		wg.Go(func() {
			for i := range jobs {
				reposted.Add(1)
				for {
					ok, dup := post(i)
					if ok {
						acked[i].Store(true)
						if dup {
							duplicates.Add(1)
						}
						break
					}
					if time.Now().After(deadline) {
						failed.Add(1)
						break
					}
					time.Sleep(50 * time.Millisecond) // a client's backoff, not a wait for an outcome
				}
			}
		})
	}
	for i := range events {
		if !acked[i].Load() {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	require.Zero(t, failed.Load(), "events never acknowledged after the restart")

	// Wait until the downstream saw every event and every run succeeded.
	// Operator commands read the store beside a running server; so does this.
	live, err := sqlite.Open(t.Context(), dbPath)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		if len(down.keys()) < events {
			return false
		}
		runs, err := live.ListRuns(t.Context(), store.ListRunsParams{State: store.RunSucceeded, Limit: 2 * events})
		return err == nil && len(runs) == events
	}, 90*time.Second, 100*time.Millisecond, "not every event was delivered")
	require.NoError(t, live.Close())

	// Stop on SIGTERM; a graceful shutdown exits 0.
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p2.exited:
	case <-time.After(30 * time.Second):
		require.FailNow(t, "serve did not stop within 30s of SIGTERM")
	}
	require.NoError(t, p2.err, "serve exit after SIGTERM")

	// (a) and (b): what the downstream saw.
	seen := down.snapshot()
	keyOf := make(map[string]string, events) // Idempotency-Key -> event id
	index := make(map[string]int, events)    // event id -> index in ids
	for i, id := range ids {
		index[id] = i
		key := delivery.IdempotencyKey(source, id, flowName, stepID, 0)
		require.NotContains(t, keyOf, key, "two events share a key")
		keyOf[key] = id
	}
	for key := range seen {
		require.Contains(t, keyOf, key, "the downstream saw an unexpected Idempotency-Key %q", key)
	}
	effects, repeated := 0, 0
	for key, id := range keyOf {
		reqs := seen[key]
		ok := 0
		for _, r := range reqs {
			if r.Body != nil {
				require.Equal(t, id, r.Body["id"], "a request under %s's key carried another event", id)
			}
			if r.Status/100 == 2 {
				ok++
			}
		}
		require.True(t, acked[index[id]].Load(), "event %s was never acknowledged", id)
		require.Positive(t, ok, "event %s was acknowledged but never delivered", id)
		effects++
		if len(reqs) == 1 {
			continue
		}
		repeated++
		var before, after int
		for _, r := range reqs {
			if r.At.Before(restartAt) {
				before++
			} else {
				after++
			}
		}
		// A request the killed process wrote just before dying may be
		// handled by a CPU-starved downstream after the restart began, so
		// both requests can carry a later time: what is checked is that a
		// key is sent at most twice and that the resend comes from the
		// restarted process's side of the timeline.
		require.Len(t, reqs, 2, "event %s: a key may be sent at most twice (in flight at the kill, then resent)", id)
		require.GreaterOrEqual(t, after, 1,
			"event %s: a key may repeat only as one request in flight at the kill and one resend after the restart (%d before, %d after)", id, before, after)
	}
	require.Equal(t, events, effects)
	require.LessOrEqual(t, repeated, workers, "more keys were resent than steps can be in flight")

	// (c) what the store holds, read after the shutdown.
	st, err := sqlite.Open(t.Context(), dbPath)
	require.NoError(t, err)
	defer st.Close()
	stored, err := st.ListEvents(t.Context(), store.ListEventsParams{Limit: 2 * events})
	require.NoError(t, err)
	var storedKeys []string
	for _, e := range stored {
		storedKeys = append(storedKeys, e.Key)
	}
	require.ElementsMatch(t, ids, storedKeys)
	runs, err := st.ListRuns(t.Context(), store.ListRunsParams{Limit: 2 * events})
	require.NoError(t, err)
	require.Len(t, runs, events)
	for _, r := range runs {
		require.Equal(t, store.RunSucceeded, r.State, "run %s: %s", r.ID, r.LastError)
	}

	t.Logf("acknowledged before the kill: %d; delivered before the kill: %d; re-posted: %d, of which already stored: %d; keys resent after the restart: %d",
		ackedBeforeKill, deliveredBeforeKill, reposted.Load(), duplicates.Load(), repeated)
}

// buildSwitchboard builds cmd/switchboard into a temporary directory.
func buildSwitchboard(t testing.TB) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	require.NoError(t, err)
	gomod := strings.TrimSpace(string(out))
	require.NotEmpty(t, gomod, "not inside a module")
	require.NotEqual(t, os.DevNull, gomod, "not inside a module")
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/switchboard")
	cmd.Dir = filepath.Dir(gomod)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// serveProc is a running `switchboard serve`.
type serveProc struct {
	cmd *exec.Cmd
	// exited is closed once the process has exited; err is then its result.
	exited chan struct{}
	err    error
}

// startServe starts `switchboard serve` with its output in logPath and
// waits until it answers GET /readyz. The process is killed, if still
// running, when the test ends; its log is printed if the test failed.
func startServe(t testing.TB, bin, cfgPath, addr, logPath string) *serveProc {
	t.Helper()
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--addr", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		require.NoError(t, err)
	}
	p := &serveProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s (last 4 KiB):\n%s", logPath, tail(logPath, 4<<10))
		}
	})

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			require.FailNow(t, "serve exited before it was ready", "%v\n%s", p.err, tail(logPath, 4<<10))
		default:
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "serve was not ready within 30s", "last error: %v\n%s", err, tail(logPath, 4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
