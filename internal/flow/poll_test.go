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

// TestCronAcrossDaylightSaving: a schedule at a fixed hour runs once a day
// across the changes of clocks: at the end of the gap when its time does
// not exist that night (it used to skip the day), once when its time
// exists twice (it used to run twice); a schedule at every hour keeps each
// time that exists.
func TestCronAcrossDaylightSaving(t *testing.T) {
	t.Parallel()
	p, err := compile(t, "dst.yaml", `version: 1
systems:
  api: { kind: http, base_url: "http://127.0.0.1:9" }
sources:
  at_two: { schedule: { cron: "0 2 * * *", timezone: America/Chicago } }
  at_two_thirty: { schedule: { cron: "30 2 * * *", timezone: America/Chicago } }
  at_one_thirty: { schedule: { cron: "30 1 * * *", timezone: America/New_York } }
  half_hourly: { schedule: { cron: "*/30 * * * *", timezone: America/New_York } }
  hourly_chicago: { schedule: { cron: "0 * * * *", timezone: America/Chicago } }
`)
	require.NoError(t, err)
	chicago, err := time.LoadLocation("America/Chicago")
	require.NoError(t, err)
	newYork, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	next := func(source string, from time.Time, n int) []time.Time {
		var out []time.Time
		for range n {
			from = p.Sources[source].Timed().Next(from)
			out = append(out, from)
		}
		return out
	}
	// Chicago springs forward on 2026-03-08 at 02:00 CST to 03:00 CDT.
	require.Equal(t, []time.Time{
		time.Date(2026, 3, 7, 2, 0, 0, 0, chicago),
		time.Date(2026, 3, 8, 3, 0, 0, 0, chicago), // 02:00 does not exist: the gap's end
		time.Date(2026, 3, 9, 2, 0, 0, 0, chicago),
	}, inZone(next("at_two", time.Date(2026, 3, 6, 12, 0, 0, 0, chicago), 3), chicago))
	require.Equal(t, []time.Time{
		time.Date(2026, 3, 8, 3, 0, 0, 0, chicago),
		time.Date(2026, 3, 9, 2, 30, 0, 0, chicago),
	}, inZone(next("at_two_thirty", time.Date(2026, 3, 7, 12, 0, 0, 0, chicago), 2), chicago))
	// New York falls back on 2026-11-01 at 02:00 EDT to 01:00 EST.
	first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC) // 01:30 EDT
	require.Equal(t, []time.Time{first, time.Date(2026, 11, 2, 6, 30, 0, 0, time.UTC)},
		inZone(next("at_one_thirty", time.Date(2026, 10, 31, 12, 0, 0, 0, newYork), 2), time.UTC), "01:30 EST, an hour later, is the same wall time")
	// Every half hour through the repeated hour: each instant once.
	require.Equal(t, []time.Time{
		time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), // 01:00, 01:30 EDT
		time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC), // 01:00, 01:30 EST
		time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC), // 02:00 EST
	}, inZone(next("half_hourly", time.Date(2026, 11, 1, 4, 45, 0, 0, time.UTC), 5), time.UTC))
	// Every hour through the gap: 02:00 does not exist, and is not run.
	require.Equal(t, []time.Time{
		time.Date(2026, 3, 8, 1, 0, 0, 0, chicago), time.Date(2026, 3, 8, 3, 0, 0, 0, chicago), time.Date(2026, 3, 8, 4, 0, 0, 0, chicago),
	}, inZone(next("hourly_chicago", time.Date(2026, 3, 8, 0, 30, 0, 0, chicago), 3), chicago))
}

func inZone(ts []time.Time, loc *time.Location) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		out[i] = t.In(loc)
	}
	return out
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
