// Package metricstest reads a Prometheus registry back as plain values, so
// tests can compare exact series with require.Equal.
package metricstest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Series gathers g and returns the value of every series whose name is one
// of names, keyed as the text format writes it: name{label="value",...},
// labels in name order. A histogram is read as name_count and name_sum
// (ask for those names).
func Series(g prometheus.Gatherer, names ...string) (map[string]float64, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			values := map[string]float64{}
			switch {
			case m.GetCounter() != nil:
				values[f.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				values[f.GetName()] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				values[f.GetName()+"_count"] = float64(m.GetHistogram().GetSampleCount())
				values[f.GetName()+"_sum"] = m.GetHistogram().GetSampleSum()
			}
			for name, v := range values {
				if slices.Contains(names, name) {
					out[name+key] = v
				}
			}
		}
	}
	return out, nil
}
