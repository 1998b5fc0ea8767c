package flow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestScheduleNext: cron is read in the configured zone (02:00 in Paris is
// 01:00 UTC in winter, 00:00 UTC in summer); every is an interval.
func TestScheduleNext(t *testing.T) {
	t.Parallel()
	p, err := compile(t, "sched.yaml", `version: 1
systems:
  api: { kind: http, base_url: "http://127.0.0.1:9" }
sources:
  nightly:
    schedule: { cron: "0 2 * * *", timezone: Europe/Paris }
  hourly:
    schedule: { every: 1h }
  weekly:
    schedule: { cron: "@weekly" }
`)
	require.NoError(t, err)
	winter := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC), p.Sources["nightly"].Timed().Next(winter).UTC())
	summer := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 7, 2, 0, 0, 0, 0, time.UTC), p.Sources["nightly"].Timed().Next(summer).UTC())
	require.Equal(t, winter.Add(time.Hour), p.Sources["hourly"].Timed().Next(winter))
	require.Equal(t, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), p.Sources["weekly"].Timed().Next(winter).UTC())
	require.Contains(t, p.Sources["nightly"].Timed().String(), "Europe/Paris")
}

// TestReconcileSidesFollowOwnership: a reconciliation of a declared entity
// compares its owner (the side repairs copy from) with one of its mirrors.
func TestReconcileSidesFollowOwnership(t *testing.T) {
	t.Parallel()
	_, err := compile(t, "rec.yaml", `version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9" }
  acct: { kind: http, base_url: "http://127.0.0.1:9" }
  sched: { kind: http, base_url: "http://127.0.0.1:9" }
entities:
  customer: { owner: acct, mirrors: [sched] }
sources:
  drift:
    entity: customer
    reconcile:
      every: 1h
      owner: { system: crm, path: /contacts, items: ".results[]", key: .email }
      mirror: { system: acct, path: /customers, items: ".customers[]", key: .email }
      fields: { phone: .phone }
`)
	require.Error(t, err)
	require.Contains(t, err.Error(), "rec.yaml:13:24: sources.drift.reconcile.owner.system: crm is not the owner of customer (acct is): the owner side must be the system of record")
	require.Contains(t, err.Error(), "rec.yaml:14:25: sources.drift.reconcile.mirror.system: acct is not a mirror of customer (its mirrors: sched); add it to entities.customer.mirrors")
}
