package httpcall_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/httpcall"
)

func TestDocsExamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		example string
		env     map[string]string
		system  string
	}{
		{"http", map[string]string{"CRM_TOKEN": token, "FORM_SECRET": "s"}, "crm"},
		{"http-oauth2", map[string]string{"BOOKS_CLIENT_ID": clientID, "BOOKS_CLIENT_SECRET": clientSecret, "JOBS_SECRET": "s"}, "books"},
	}
	for _, tt := range tests {
		t.Run(tt.example, func(t *testing.T) {
			t.Parallel()
			p := connectortest.CompileDocExample(t, tt.example, httpcall.Register, tt.env)
			require.Equal(t, "http", p.Systems[tt.system].Kind)
		})
	}
}
