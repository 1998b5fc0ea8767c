package ingest_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/metrics/metricstest"
)

// outcomeOf is the events_received_total outcome each rejection status
// counts under.
var outcomeOf = map[int]string{
	http.StatusBadRequest:            metrics.OutcomeRejectedBody,
	http.StatusUnauthorized:          metrics.OutcomeRejectedSignature,
	http.StatusNotFound:              metrics.OutcomeUnknownSource,
	http.StatusRequestEntityTooLarge: metrics.OutcomeRejectedSize,
	http.StatusUnsupportedMediaType:  metrics.OutcomeRejectedContentType,
	http.StatusServiceUnavailable:    metrics.OutcomeUnavailable,
}

// received names one events_received_total series as series returns it.
func received(source, outcome string) string {
	return fmt.Sprintf(`switchboard_events_received_total{outcome=%q,source=%q}`, outcome, source)
}

// series returns the bundle's series named names (metricstest.Series).
func (b *testBundle) series(tb testing.TB, names ...string) map[string]float64 {
	tb.Helper()
	out, err := metricstest.Series(b.metrics, names...)
	require.NoError(tb, err)
	return out
}
