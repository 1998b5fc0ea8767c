package metrics

import "github.com/prometheus/client_golang/prometheus"

// reconcileMetrics are the collectors of reconcile sources.
type reconcileMetrics struct {
	differences *prometheus.GaugeVec
}

func newReconcileMetrics(reg *prometheus.Registry) *reconcileMetrics {
	r := &reconcileMetrics{
		differences: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_reconcile_differences",
			Help: "Differences the last reconciliation of a source found, by source and type (missing_in_mirror, missing_in_owner, field_mismatch, duplicate_key).",
		}, []string{"source", "type"}),
	}
	reg.MustRegister(r.differences)
	return r
}

// ReconcileDifferences sets how many differences of type typ the last
// reconciliation of source found.
func (m *Metrics) ReconcileDifferences(source, typ string, n int) {
	if m == nil {
		return
	}
	m.reconcile.differences.WithLabelValues(source, typ).Set(float64(n))
}
