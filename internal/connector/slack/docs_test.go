package slack_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/slack"
)

func TestDocsExample(t *testing.T) {
	t.Parallel()
	p := connectortest.CompileDocExample(t, "slack", slack.Register, map[string]string{
		"SLACK_WEBHOOK_URL": "https://hooks.slack.com" + webhookPath, "SLACK_BOT_TOKEN": botToken, "FORM_SECRET": "s",
	})
	require.Equal(t, "slack", p.Systems["chat"].Kind)
}
