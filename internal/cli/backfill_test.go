package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

// historyAPI serves days jobs updated one a day from 2026-01-01, three per
// page, with a next-page token; ?since= filters inclusively. before, when
// set, runs before the n-th request (1-based) is answered.
func historyAPI(t testing.TB, days int, before func(n int)) *connectortest.Upstream {
	t.Helper()
	var requests atomic.Int64
	return connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before(int(requests.Add(1)))
		}
		since := r.URL.Query().Get("since")
		from, _ := strconv.Atoi(r.URL.Query().Get("page_token"))
		var jobs []map[string]any
		for i := range days {
			at := time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
			if at >= since {
				jobs = append(jobs, map[string]any{"id": i + 1, "updated_at": at})
			}
		}
		page := map[string]any{"jobs": jobs[min(from, len(jobs)):min(from+3, len(jobs))], "next": nil}
		if from+3 < len(jobs) {
			page["next"] = strconv.Itoa(from + 3)
		}
		_ = json.NewEncoder(w).Encode(page)
	})
}

// backfillConfigFile writes a config whose poll source jobs reads the
// history at url from system sched, and returns its path.
func backfillConfigFile(t testing.TB, url string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "switchboard.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `version: 1
store: sqlite:sb.db
systems:
  sched: { kind: http, base_url: %s }
sources:
  jobs:
    poll:
      system: sched
      every: 5m
      path: /jobs
      query: { since: $cursor }
      items: .jobs[]
      id: .id
      version: .updated_at
      cursor: .updated_at
      paginate: { next: .next, param: page_token }
flows:
  sync:
    on: jobs
    steps: [ { id: push, do: sched.request, with: { path: '"/sink"' } } ]
`, url), 0o600))
	return cfg
}

func TestBackfillAndPolls(t *testing.T) {
	cfg := backfillConfigFile(t, historyAPI(t, 30, nil).URL)

	code, _, stderr := run(t, nil, "backfill", "jobs", "--config", cfg, "--quiet")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--since is required")

	code, stdout, stderr := run(t, nil, "backfill", "jobs", "--since", "2026-01-11T00:00:00Z", "--config", cfg, "--quiet")
	require.Equal(t, 0, code, stderr)
	t.Log(stdout)
	require.Regexp(t, `^backfill jobs: \d+ pages, \d+ records: 20 emitted, \d+ unchanged, 0 already stored; cursor 2026-01-30T00:00:00Z; `, stdout)

	// Earlier history: the overlap is not emitted again.
	code, stdout, stderr = run(t, nil, "backfill", "jobs", "--since", "2026-01-01T00:00:00Z", "--config", cfg, "--quiet")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, ": 10 emitted,", "only the earlier history is new")

	// Without --since it resumes from its own cursor.
	code, stdout, stderr = run(t, nil, "backfill", "jobs", "--config", cfg)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "resuming the backfill of jobs from 2026-01-30T00:00:00Z")
	require.Contains(t, stdout, "1 records: 0 emitted, 1 unchanged", "the last record, asked again from the stored cursor")

	code, stdout, _ = run(t, nil, "events", "list", "--source", "jobs", "--limit", "100", "--config", cfg)
	require.Equal(t, 0, code)
	require.Equal(t, 31, len(strings.Split(strings.TrimSpace(stdout), "\n")), "a header and 30 events, each once")

	code, stdout, _ = run(t, nil, "polls", "--config", cfg)
	require.Equal(t, 0, code)
	t.Log("\n" + stdout)
	require.Contains(t, stdout, "jobs")
	require.Contains(t, stdout, "not run yet", "a backfill leaves the scheduled poll's state alone")

	code, _, stderr = run(t, nil, "backfill", "nope", "--since", "x", "--config", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `"nope" is not a poll source`)
}
