package hubspot_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/hubspot"
)

func TestDocsExample(t *testing.T) {
	t.Parallel()
	p := connectortest.CompileDocExample(t, "hubspot", hubspot.Register, map[string]string{
		"HUBSPOT_TOKEN": token, "FORM_SECRET": "s",
	})
	require.Equal(t, "hubspot", p.Systems["crm"].Kind)
}
