package twilio_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/twilio"
)

func TestDocsExample(t *testing.T) {
	t.Parallel()
	p := connectortest.CompileDocExample(t, "twilio", twilio.Register, map[string]string{
		"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token, "FORM_SECRET": "s",
	})
	require.Equal(t, "twilio", p.Systems["sms"].Kind)
}
