package email

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestInputTypes(t *testing.T) {
	t.Parallel()
	s := &system{}
	connectortest.CheckInputTypes(t, sendSpec, map[string]any{
		"to":       "Ann <ann@example.com>, bob@example.com",
		"subject":  "Hi",
		"text":     "Hello",
		"html":     "<p>Hello</p>",
		"from":     "office@example.com",
		"reply_to": "desk@example.com",
		"cc":       []any{"cat@example.com"},
		"bcc":      "dan@example.com",
	}, func(m map[string]any) error {
		_, err := s.parseMessage(m)
		return err
	})
}
