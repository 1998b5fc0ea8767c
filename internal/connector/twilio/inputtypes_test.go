package twilio

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestInputTypes(t *testing.T) {
	t.Parallel()
	s := &system{}
	connectortest.CheckInputTypes(t, sendSMSSpec, map[string]any{
		"to":                    "+15550100",
		"body":                  "hi",
		"from":                  "+15550199",
		"messaging_service_sid": "MG" + "0123456789abcdef0123456789abcdef",
		"status_callback":       "https://example.com/status",
	}, func(m map[string]any) error {
		_, err := s.form(m)
		return err
	})
}
