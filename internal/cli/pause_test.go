package cli_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// pauseKinds are the two ways a system is paused, as the store records
// them, and what a command that refuses to call it says of each.
var pauseKinds = []struct {
	name   string
	reason func(system string) string
	says   func(system string) string
}{
	{
		name:   "by an operator",
		reason: func(string) string { return store.OperatorPause },
		says:   func(string) string { return "by an operator" },
	},
	{
		name:   "credentials refused",
		reason: func(system string) string { return "HTTP 401 from " + system },
		says:   func(system string) string { return "it refused our credentials (HTTP 401 from " + system + ")" },
	},
}

// pausedAt is when the tests' pauses are recorded.
var pausedAt = time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)

// openStoreOf opens the SQLite store of the config at cfg, as a serving
// node (or `systems pause`) beside the command would.
func openStoreOf(t testing.TB, cfg string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(filepath.Dir(cfg), "sb.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// TestCommandsRefusePausedSystem: backfill and reconcile (also a dry run)
// call systems outside the executor. A system they would call is paused,
// by an operator or because it refused our credentials: the command does
// not start, calls nothing, and says which system, who or what paused it
// and when, and how to resume it. Once resumed, it runs.
func TestCommandsRefusePausedSystem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		upstream func(t testing.TB) *connectortest.Upstream
		// config writes the command's config for the upstream at url.
		config func(t testing.TB, url string) string
		args   []string
		// system is the one paused; the command calls it, and others.
		system string
	}{
		{"backfill", func(t testing.TB) *connectortest.Upstream { return historyAPI(t, 30, nil) }, backfillConfigFile, []string{"backfill", "jobs", "--since", "2026-01-01T00:00:00Z", "--quiet"}, "sched"},
		{"reconcile, the mirror paused", reconcileSystems, reconcileConfigFile, []string{"reconcile", "customer_drift"}, "acct"},
		{"reconcile dry run, the owner paused", reconcileSystems, reconcileConfigFile, []string{"reconcile", "customer_drift", "--dry-run"}, "crm"},
	} {
		for _, kind := range pauseKinds {
			t.Run(c.name+", "+kind.name, func(t *testing.T) {
				t.Parallel()
				up := c.upstream(t)
				cfg := c.config(t, up.URL)
				st := openStoreOf(t, cfg)
				_, err := st.PauseSystem(t.Context(), store.PauseParams{System: c.system, Reason: kind.reason(c.system), Now: pausedAt})
				require.NoError(t, err)

				args := append(c.args, "--config", cfg)
				code, out, errOut := run(t, nil, args...)
				require.Equal(t, 1, code, out+errOut)
				require.Zero(t, up.Count(), "no system called")
				require.Contains(t, errOut, "not started: system "+c.system+" is paused: ")
				require.Contains(t, errOut, kind.says(c.system)+" at 2026-11-30T09:15:00Z")
				require.Contains(t, errOut, "switchboard systems resume "+c.system+" --config "+cfg)

				code, _, errOut = run(t, nil, "systems", "resume", c.system, "--config", cfg)
				require.Equal(t, 0, code, errOut)
				code, out, errOut = run(t, nil, args...)
				require.Equal(t, 0, code, out+errOut)
				require.NotZero(t, up.Count())
			})
		}
	}
}

// TestBackfillStopsWhenPaused: a long backfill is running when its system
// is paused (by an operator, or by another node that saw a 401). Within
// the 2 s in which serving nodes apply a pause, the backfill stops calling
// the system, keeps the cursor of the pages it committed, and says why it
// stopped and how to continue. Resumed, it continues from that cursor, and
// every record is stored once.
func TestBackfillStopsWhenPaused(t *testing.T) {
	t.Parallel()
	const days, pauseAt = 300, 3 // 150 pages (two new records each); paused while the third is read
	for _, kind := range pauseKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			var st store.Store
			var paused atomic.Bool
			up := historyAPI(t, days, func(n int) {
				if n == pauseAt {
					// In the server's goroutine: no require (FailNow) here.
					if _, err := st.PauseSystem(t.Context(), store.PauseParams{System: "sched", Reason: kind.reason("sched"), Now: pausedAt}); err != nil {
						t.Errorf("pause: %v", err)
					}
					paused.Store(true)
				}
				if paused.Load() {
					// 6 s of pages left: a backfill that does not stop ends
					// long after the pause was applied.
					time.Sleep(40 * time.Millisecond)
				}
			})
			cfg := backfillConfigFile(t, up.URL)
			st = openStoreOf(t, cfg)

			code, out, errOut := run(t, nil, "backfill", "jobs", "--since", "2026-01-01T00:00:00Z", "--config", cfg, "--quiet")
			require.Equal(t, 1, code, out+errOut)
			t.Log(out + errOut)
			require.Less(t, up.Count(), days/3, "stopped calling the paused system")
			require.Contains(t, errOut, "stopped: ")
			require.Contains(t, errOut, "system sched is paused: "+kind.says("sched")+" at 2026-11-30T09:15:00Z")
			require.Contains(t, errOut, "switchboard systems resume sched --config "+cfg)
			m := regexp.MustCompile(`run again without --since to resume from (\S+)\)`).FindStringSubmatch(errOut)
			require.NotNil(t, m, errOut)
			first := emitted(t, out)
			require.Positive(t, first)

			code, _, errOut = run(t, nil, "systems", "resume", "sched", "--config", cfg)
			require.Equal(t, 0, code, errOut)
			paused.Store(false)
			code, out, errOut = run(t, nil, "backfill", "jobs", "--config", cfg, "--quiet")
			require.Equal(t, 0, code, out+errOut)
			require.Contains(t, errOut, "resuming the backfill of jobs from "+m[1])
			require.Equal(t, days, first+emitted(t, out), "every record stored once")
		})
	}
}

// emitted reads the records a backfill emitted from its summary line.
func emitted(t testing.TB, out string) int {
	t.Helper()
	m := regexp.MustCompile(`records: (\d+) emitted,`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// TestReconcileStopsWhenPaused: the mirror is paused while a reconcile
// reads a long owner listing. The reconcile stops within the 2 s in which
// serving nodes apply a pause, never calls the mirror, emits nothing, and
// says why.
func TestReconcileStopsWhenPaused(t *testing.T) {
	t.Parallel()
	const pages = 80
	for _, kind := range pauseKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			var st store.Store
			var ownerReads, mirrorReads atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("GET /crm/contacts", func(w http.ResponseWriter, r *http.Request) {
				n := int(ownerReads.Add(1))
				if n == 2 {
					// In the server's goroutine: no require (FailNow) here.
					if _, err := st.PauseSystem(t.Context(), store.PauseParams{System: "acct", Reason: kind.reason("acct"), Now: pausedAt}); err != nil {
						t.Errorf("pause: %v", err)
					}
				}
				if n >= 2 {
					time.Sleep(50 * time.Millisecond) // 4 s of owner pages after the pause
				}
				page := map[string]any{"results": []any{map[string]any{"email": strconv.Itoa(n) + "@example.com", "phone": "1"}}, "next": nil}
				if n < pages {
					page["next"] = strconv.Itoa(n + 1)
				}
				_ = json.NewEncoder(w).Encode(page)
			})
			mux.HandleFunc("GET /acct/customers", func(w http.ResponseWriter, _ *http.Request) {
				mirrorReads.Add(1)
				_, _ = w.Write([]byte(`{"customers": []}`))
			})
			up := connectortest.NewUpstream(t, mux.ServeHTTP)
			cfg := reconcileConfigFile(t, up.URL)
			st = openStoreOf(t, cfg)

			code, out, errOut := run(t, nil, "reconcile", "customer_drift", "--config", cfg)
			require.Equal(t, 1, code, out+errOut)
			t.Log(out + errOut)
			require.Zero(t, mirrorReads.Load(), "the paused mirror is not called")
			require.Less(t, int(ownerReads.Load()), pages, "stopped before the owner's last page: the mirror would be called next")
			require.Contains(t, errOut, "system acct is paused: "+kind.says("acct")+" at 2026-11-30T09:15:00Z")
			require.Contains(t, errOut, "nothing emitted")
			events, err := st.ListEvents(t.Context(), store.ListEventsParams{Source: "customer_drift", Limit: 10})
			require.NoError(t, err)
			require.Empty(t, events)
			require.False(t, strings.Contains(out, "events emitted"), out)
		})
	}
}

// TestCommandsRefusedCredentials: a system answers the command's own call
// 401. The command stops at once (a refusal is not retried) and says so;
// it records no pause: the command's credentials come from the
// environment of whoever runs it, which need not be the serving nodes',
// and a scheduled poll's refusal pauses nothing either (docs/polling.md).
// The serving nodes' own calls pause the system if theirs are refused.
func TestCommandsRefusedCredentials(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		config func(t testing.TB, url string) string
		args   []string
	}{
		{"backfill", backfillConfigFile, []string{"backfill", "jobs", "--since", "2026-01-01T00:00:00Z", "--quiet"}},
		{"reconcile", reconcileConfigFile, []string{"reconcile", "customer_drift"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, `{"error":"invalid token"}`, http.StatusUnauthorized)
			})
			cfg := c.config(t, up.URL)
			code, out, errOut := run(t, nil, append(c.args, "--config", cfg)...)
			require.Equal(t, 1, code, out+errOut)
			t.Log(errOut)
			require.Contains(t, errOut, "401")
			require.Equal(t, 1, up.Count(), "not retried")
			pauses, err := openStoreOf(t, cfg).ListPauses(t.Context())
			require.NoError(t, err)
			require.Empty(t, pauses)
		})
	}
}

// TestPollsShowsPausedSystem: `switchboard polls` says when a system a
// source reads is paused, and what that does to its runs: skipped at an
// operator's pause (no failure counted), waiting for the probe at a
// credential pause.
func TestPollsShowsPausedSystem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reason, says string
	}{
		{store.OperatorPause, "sched by an operator since 2026-11-30T09:15:00Z: runs skipped"},
		{"HTTP 401 from sched", "sched, credentials refused since 2026-11-30T09:15:00Z: runs wait for its probe"},
	} {
		t.Run(c.reason, func(t *testing.T) {
			t.Parallel()
			cfg := backfillConfigFile(t, "http://127.0.0.1:1")
			st := openStoreOf(t, cfg)
			require.NoError(t, st.InitPollState(t.Context(), "jobs", pausedAt))
			code, stdout, stderr := run(t, nil, "polls", "--config", cfg)
			require.Equal(t, 0, code, stderr)
			require.Regexp(t, `jobs .* 0\s+-\s*\n`, stdout, "nothing paused")

			_, err := st.PauseSystem(t.Context(), store.PauseParams{System: "sched", Reason: c.reason, Now: pausedAt})
			require.NoError(t, err)
			code, stdout, stderr = run(t, nil, "polls", "--config", cfg)
			require.Equal(t, 0, code, stderr)
			t.Log("\n" + stdout)
			require.Contains(t, stdout, "PAUSED")
			require.Contains(t, stdout, c.says)
		})
	}
}
