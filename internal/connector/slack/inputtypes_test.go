package slack

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestInputTypes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		spec  connector.ActionSpec
		valid map[string]any
	}{
		{postWebhookSpec, map[string]any{"text": "hi", "blocks": []any{map[string]any{"type": "divider"}}}},
		{postMessageSpec, map[string]any{"channel": "C1", "text": "hi", "blocks": []any{}, "thread_ts": "1503435956.000247"}},
	} {
		connectortest.CheckInputTypes(t, tt.spec, tt.valid, func(m map[string]any) error {
			_, err := parseMessage(m, tt.spec)
			return err
		})
	}
}
