package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

// reconcileSystems serves a CRM's contacts (two pages) and an accounting
// system's customers with planted differences.
func reconcileSystems(t testing.TB) *connectortest.Upstream {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crm/contacts", func(w http.ResponseWriter, r *http.Request) {
		pages := map[string]any{
			"": map[string]any{"results": []any{
				map[string]any{"id": "1", "email": "ann@example.com", "firstname": "Ann", "phone": "5550101"},
				map[string]any{"id": "2", "email": "bob@example.com", "firstname": "Bob", "phone": "5550102"},
			}, "next": "p2"},
			"p2": map[string]any{"results": []any{
				map[string]any{"id": "3", "email": "carl@example.com", "firstname": "Carl\tJr", "phone": "5550103"},
				map[string]any{"id": "4", "email": "dee@example.com", "firstname": strings.Repeat("Dee", 30), "phone": "5550104"},
			}, "next": nil},
		}
		_ = json.NewEncoder(w).Encode(pages[r.URL.Query().Get("after")])
	})
	mux.HandleFunc("GET /acct/customers", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"customers": []any{
			map[string]any{"id": 1, "email": "ann@example.com", "first_name": "Ann", "phone": 5550101},
			map[string]any{"id": 2, "email": "bob@example.com", "first_name": "Robert", "phone": 5550199},
			map[string]any{"id": 4, "email": "dee@example.com", "first_name": "Dee", "phone": "5550104"},
			map[string]any{"id": 9, "email": "zed@example.com", "first_name": "Zed", "phone": "5550109"},
		}})
	})
	return connectortest.NewUpstream(t, mux.ServeHTTP)
}

func reconcileConfigFile(t testing.TB, url string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "switchboard.yaml")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, `version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: %[1]s/crm }
  acct: { kind: http, base_url: %[1]s/acct }
sources:
  customer_drift:
    reconcile:
      cron: "0 3 * * 1"
      owner:
        system: crm
        path: /contacts
        items: .results[]
        key: .email
        paginate: { next: .next, param: after }
      mirror: { system: acct, path: /customers, items: ".customers[]", key: .email }
      fields:
        phone: .phone
        name: { owner: .firstname, mirror: .first_name }
  hooks:
    webhook: {}
flows:
  repair:
    on: customer_drift
    when: .type == "field_mismatch"
    steps: [ { id: put, do: acct.request, with: { method: '"PUT"', path: '"/customers/\(.mirror.id)"' } } ]
  echo:
    on: hooks
    steps: [ { id: put, do: acct.request, with: { path: '"/x"' } } ]
`, url), 0o600))
	return path
}

// TestReconcileCommand: --dry-run prints the differences as a table, one
// row per differing field, values as JSON cut to fit, then the summary,
// and stores nothing; without it the events are stored for the servers.
func TestReconcileCommand(t *testing.T) {
	t.Parallel()
	srv := reconcileSystems(t)
	cfg := reconcileConfigFile(t, srv.URL)

	code, out, errOut := run(t, nil, "reconcile", "customer_drift", "--dry-run", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, `reconciling customer_drift: reconcile crm GET /contacts (key .email) with acct GET /customers (key .email) cron "0 3 * * 1" in UTC, fields: name, phone`+"\n", errOut)
	lines := strings.Split(out, "\n")
	require.Equal(t, []string{
		"KIND               KEY               FIELD  OWNER                                     MIRROR",
		`field_mismatch     bob@example.com   name   "Bob"                                     "Robert"`,
		`field_mismatch     bob@example.com   phone  "5550102"                                 5550199`,
		`missing_in_mirror  carl@example.com  -      {"name":"Carl\tJr","phone":"5550103"}     -`,
		`field_mismatch     dee@example.com   name   "DeeDeeDeeDeeDeeDeeDeeDeeDeeDeeDeeDeeDe…  "Dee"`,
		`missing_in_owner   zed@example.com   -      -                                         {"name":"Zed","phone":"5550109"}`,
		"",
	}, lines[:7], out)
	require.Regexp(t, `^customer_drift: owner crm 4 records, mirror acct 4 records; 3 matched, 1 missing_in_mirror, 1 missing_in_owner, 2 field_mismatch, 0 duplicate_key; \S+$`, lines[7])
	require.Equal(t, "dry run: nothing emitted", lines[8])
	_, err := os.Stat(filepath.Join(filepath.Dir(cfg), "sb.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "a dry run does not open the store")

	code, out, errOut = run(t, nil, "reconcile", "customer_drift", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `run manual-\S+: 5 events emitted`, out)
	code, out, errOut = run(t, nil, "events", "list", "--source", "customer_drift", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 2, strings.Count(out, "repair:pending"), out)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 6, out)

	code, _, errOut = run(t, nil, "reconcile", "hooks", "--config", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `"hooks" is not a reconcile source`)
	code, _, errOut = run(t, nil, "reconcile", "--config", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "SOURCE is required")
}
