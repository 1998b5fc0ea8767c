package flow_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStoreShownWithoutPassword compiles PostgreSQL stores whose password
// is in the user info or in a parameter (pgx reads password= and
// sslpassword= from the query): Plan.Store, which check prints and serve
// logs, masks each.
func TestStoreShownWithoutPassword(t *testing.T) {
	t.Parallel()
	tests := []struct{ store, shown string }{
		{"postgres://app:hunter2@db:5432/sb?sslmode=require", "postgres://app:xxxxx@db:5432/sb?sslmode=require"},
		{"postgres://app@db:5432/sb?password=hunter2&sslmode=require", "postgres://app@db:5432/sb?password=xxxxx&sslmode=require"},
		{"postgresql://app@db/sb?sslmode=verify-full&sslpassword=hunter2&pool_max_conns=4", "postgresql://app@db/sb?sslmode=verify-full&sslpassword=xxxxx&pool_max_conns=4"},
		{"postgres://app@db/sb?pass%77ord=hunter2", "postgres://app@db/sb?pass%77ord=xxxxx"},
	}
	for _, tt := range tests {
		p := mustCompile(t, "c.yaml", "version: 1\nstore: "+tt.store+"\nsources:\n  s: {webhook: {}}\n")
		require.Equal(t, tt.shown, p.Store)
		require.NotContains(t, p.Store, "hunter2")
	}
}
