package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReconcileLogsDroppedConflicts: the engine of the reconcile command
// logs, like serve's, what it does instead of running a flow (here a
// mirror's change the ownership rules drop); it logged nothing.
func TestReconcileLogsDroppedConflicts(t *testing.T) {
	t.Parallel()
	srv := reconcileSystems(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "switchboard.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `version: 1
store: sqlite:sb.db
systems:
  crm: { kind: http, base_url: %[1]s/crm }
  acct: { kind: http, base_url: %[1]s/acct }
entities:
  customer: { owner: crm, mirrors: [acct] }
sources:
  customer_drift:
    system: acct
    entity: customer
    reconcile:
      cron: "0 3 * * 1"
      owner: { system: crm, path: /contacts, items: ".results[]", key: .email, paginate: { next: .next, param: after } }
      mirror: { system: acct, path: /customers, items: ".customers[]", key: .email }
      fields: { phone: .phone }
flows:
  back_to_crm:
    on: customer_drift
    steps: [ { id: put, do: crm.request, writes: customer, record_id: .key, with: { path: '"/c"', body: '{phone: .mirror.phone}' } } ]
`, srv.URL), 0o600))
	code, out, errOut := run(t, nil, "reconcile", "customer_drift", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "events emitted")
	require.Contains(t, errOut, "change from a mirror dropped")
	require.Equal(t, strings.Count(errOut, `"level":"WARN"`), strings.Count(errOut, "change from a mirror dropped"), errOut)
}
