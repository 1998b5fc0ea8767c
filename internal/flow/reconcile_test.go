package flow_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

// TestReconcileCompile: a reconcile source compiles to two listings, their
// keys and the compared fields (sorted, mapped or shared), runs on its
// schedule, and gets the default limits.
func TestReconcileCompile(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "rec.yaml", `version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9001" }
  acct: { kind: http, base_url: "http://127.0.0.1:9002" }
sources:
  customer_drift:
    entity: customer
    reconcile:
      cron: "0 3 * * 1"
      timezone: Europe/Paris
      owner:
        system: crm
        path: /contacts
        query: { archived: "false" }
        items: .results[]
        key: .email | ascii_downcase
        paginate: { next: .paging.next.after, param: after }
        max_pages: 1000
      mirror: { system: acct, path: /customers, items: ".customers[]", key: .email | ascii_downcase, paginate: { page: page } }
      fields:
        phone: .phone
        name: { owner: .firstname, mirror: .first_name }
flows:
  report:
    on: customer_drift
    steps: [ { id: post, do: crm.request, with: { path: '"/notes"' } } ]
`)
	src := p.Sources["customer_drift"]
	r := src.Reconcile
	require.NotNil(t, r)
	require.Nil(t, src.Poll)
	require.Equal(t, "crm", r.Owner.System)
	require.Equal(t, 1000, r.Owner.MaxPages)
	require.Equal(t, flow.DefaultMaxPages, r.Mirror.MaxPages)
	require.Equal(t, flow.PageNumber, r.Mirror.Paginate.Style)
	require.Equal(t, ".email | ascii_downcase", r.Mirror.Key.String())
	require.Equal(t, flow.DefaultMaxDifferences, r.MaxDifferences)
	require.Len(t, r.Fields, 2)
	require.Equal(t, "name", r.Fields[0].Name)
	require.Equal(t, ".firstname", r.Fields[0].Owner.String())
	require.Equal(t, ".first_name", r.Fields[0].Mirror.String())
	require.Equal(t, "phone", r.Fields[1].Name)
	require.Same(t, r.Fields[1].Owner, r.Fields[1].Mirror)
	monday := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC) // 03:00 in Paris
	require.Equal(t, monday, src.Timed().Next(monday.Add(-time.Hour)).UTC())
}

// TestReconcileErrorsGolden compiles reconcile sources full of mistakes
// and compares every error with testdata/reconcile_errors.golden.
// Regenerate with: go test ./internal/flow -update
func TestReconcileErrorsGolden(t *testing.T) {
	t.Parallel()
	const file = "testdata/reconcile_errors.yaml"
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	_, err = compile(t, file, string(data))
	require.Error(t, err)
	positioned := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+:\d+: \S`)
	var lines []string
	for _, e := range unjoin(err) {
		var ce *config.Error
		require.ErrorAs(t, e, &ce)
		require.Regexp(t, positioned, e.Error(), "every error names file:line:col")
		lines = append(lines, e.Error())
	}
	got := strings.Join(lines, "\n") + "\n"
	const golden = "testdata/reconcile_errors.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/flow -update to create it")
	require.Equal(t, string(want), got)
}
