package delivery_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// executorSeries are the series the executor writes.
var executorSeries = []string{
	"switchboard_runs_total", "switchboard_step_attempts_total",
	"switchboard_lag_seconds_count", "switchboard_step_duration_seconds_count",
}

func (b *bundle) series(t *testing.T) map[string]float64 {
	t.Helper()
	out, err := metricstest.Series(b.reg, executorSeries...)
	require.NoError(t, err)
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		yaml   string
		first  func(int, connector.Request) (connector.Result, error)
		events []string // payloads, one run each
		want   map[string]float64
	}{
		{
			name:   "retried then succeeded",
			yaml:   twoSteps,
			events: []string{`{"n": 1}`},
			first: func(n int, _ connector.Request) (connector.Result, error) {
				if n == 1 {
					return connector.Result{Status: 503}, errors.New("503 Service Unavailable")
				}
				return connector.Result{Output: map[string]any{"id": 1}, Status: 200}, nil
			},
			want: map[string]float64{
				`switchboard_runs_total{flow="f",state="retrying"}`:                                     1,
				`switchboard_runs_total{flow="f",state="succeeded"}`:                                    1,
				`switchboard_step_attempts_total{flow="f",outcome="retry",step="one",system="sys"}`:     1,
				`switchboard_step_attempts_total{flow="f",outcome="succeeded",step="one",system="sys"}`: 1,
				`switchboard_step_attempts_total{flow="f",outcome="succeeded",step="two",system="sys"}`: 1,
				`switchboard_lag_seconds_count{flow="f"}`:                                               1,
				`switchboard_step_duration_seconds_count{system="sys"}`:                                 3,
			},
		},
		{
			name:   "attempts exhausted",
			yaml:   twoSteps,
			events: []string{`{"n": 1}`, `{"n": 2}`},
			first: func(int, connector.Request) (connector.Result, error) {
				return connector.Result{Status: 502}, errors.New("502 Bad Gateway")
			},
			want: map[string]float64{
				`switchboard_runs_total{flow="f",state="retrying"}`:                                 4,
				`switchboard_runs_total{flow="f",state="dead"}`:                                     2,
				`switchboard_step_attempts_total{flow="f",outcome="retry",step="one",system="sys"}`: 4,
				`switchboard_step_attempts_total{flow="f",outcome="dead",step="one",system="sys"}`:  2,
				`switchboard_lag_seconds_count{flow="f"}`:                                           2,
				`switchboard_step_duration_seconds_count{system="sys"}`:                             6,
			},
		},
		{
			// The mapping of step two fails before any call: the attempt
			// is counted, no call is timed.
			name:   "mapping error",
			yaml:   twoSteps,
			events: []string{`{"n": 1}`},
			first:  ok(map[string]any{"id": "not a number"}),
			want: map[string]float64{
				`switchboard_runs_total{flow="f",state="dead"}`:                                         1,
				`switchboard_step_attempts_total{flow="f",outcome="succeeded",step="one",system="sys"}`: 1,
				`switchboard_step_attempts_total{flow="f",outcome="dead",step="two",system="sys"}`:      1,
				`switchboard_lag_seconds_count{flow="f"}`:                                               1,
				`switchboard_step_duration_seconds_count{system="sys"}`:                                 1,
			},
		},
		{
			// The condition fails before any step: no system is involved.
			name: "when error",
			yaml: `
version: 1
systems: { sys: { kind: fake } }
sources: { src: { webhook: {} } }
flows:
  f:
    on: src
    when: .n + 1 > 2
    steps: [ { id: one, do: sys.first } ]
`,
			events: []string{`{"n": "text"}`},
			first:  ok(nil),
			want: map[string]float64{
				`switchboard_runs_total{flow="f",state="dead"}`:                                 1,
				`switchboard_step_attempts_total{flow="f",outcome="dead",step="one",system=""}`: 1,
				`switchboard_lag_seconds_count{flow="f"}`:                                       1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.yaml)
			b.sys["first"].do = tt.first
			b.sys["second"].do = ok(nil)
			for i, p := range tt.events {
				b.insert(t, string(rune('a'+i)), p)
			}
			runs := b.runUntil(t, func(runs []store.Run) bool { return len(runs) == len(tt.events) && allFinished(runs) })
			require.Len(t, runs, len(tt.events))
			// runUntil returns after the executor stopped: every count is in.
			require.Equal(t, tt.want, b.series(t))
		})
	}
}
