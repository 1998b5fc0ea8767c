package flow_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/secret"
)

func TestCompileTracing(t *testing.T) {
	t.Parallel()

	t.Run("off", func(t *testing.T) {
		t.Parallel()
		require.Nil(t, mustCompile(t, "c.yaml", alertsHead).Tracing)
	})
	t.Run("on", func(t *testing.T) {
		t.Parallel()
		p := mustCompile(t, "c.yaml", alertsHead+`tracing:
  otlp_endpoint: http://collector:4318
  sample_ratio: 0.25
  service_name: switchboard-eu
  headers: { Authorization: "${SMS_TOKEN}" }
`)
		tr := p.Tracing
		require.NotNil(t, tr)
		require.Equal(t, "http://collector:4318", tr.OTLPEndpoint)
		require.InDelta(t, 0.25, *tr.SampleRatio, 1e-9)
		require.Equal(t, "switchboard-eu", tr.ServiceName)
		require.Equal(t, map[string]secret.Value{"Authorization": "sms-T0ken-never-printed"}, tr.Headers)
	})
	t.Run("empty section", func(t *testing.T) {
		t.Parallel()
		p := mustCompile(t, "c.yaml", alertsHead+"tracing: {}\n")
		require.NotNil(t, p.Tracing, "on, with the OTEL_* environment's endpoint")
		require.Nil(t, p.Tracing.SampleRatio)
	})
	t.Run("mistakes", func(t *testing.T) {
		t.Parallel()
		_, err := compile(t, "c.yaml", alertsHead+`tracing:
  otlp_endpoint: collector:4317
  sample_ratio: 1.5
  headers: { "bad header": x }
`)
		require.Error(t, err)
		require.Equal(t, `c.yaml:11:18: tracing.otlp_endpoint: must be an absolute http or https URL such as http://collector:4318 (OTLP over HTTP)
c.yaml:12:17: tracing.sample_ratio: must be between 0 and 1
c.yaml:13:12: tracing.headers: "bad header" is not a valid HTTP header name`, err.Error())
	})
}
