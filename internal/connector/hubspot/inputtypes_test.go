package hubspot

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
)

func TestInputTypes(t *testing.T) {
	t.Parallel()
	props := map[string]any{"firstname": "Ann", "tags": []any{"a", "b"}, "dealname": "D"}
	valid := map[string]map[string]any{
		"upsert_contact":         {"email": "ann@example.com", "properties": props},
		"update_contact":         {"id": "1", "properties": props, "id_property": "email"},
		"assign_owner":           {"id": 1, "owner_id": "2"},
		"create_note":            {"contact_id": "1", "body": "b", "timestamp": "2025-01-31T09:00:00Z", "properties": props},
		"create_task":            {"contact_id": "1", "subject": "s", "body": "b", "timestamp": 1738314000000, "properties": props},
		"create_deal":            {"properties": props, "contact_id": "1"},
		"update_deal":            {"id": "1", "properties": props, "id_property": "x"},
		"move_deal_stage":        {"id": "1", "dealstage": "closedwon", "pipeline": "default"},
		"associate_deal_contact": {"deal_id": "1", "contact_id": "2"},
	}
	require.Len(t, valid, len(actions))
	for _, a := range actions {
		require.Contains(t, valid, a.spec.Name)
		connectortest.CheckInputTypes(t, a.spec, valid[a.spec.Name], func(m map[string]any) error {
			_, err := a.parse(m, time.Now())
			return err
		})
	}
}
