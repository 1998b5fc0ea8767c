package connectortest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

// DocExample returns the YAML example of the named kind in
// docs/connectors.md: the ```yaml block after the line
// "<!-- example: KIND -->". Connector tests compile it, so the copy-paste
// config the docs show keeps working.
func DocExample(t testing.TB, kind string) []byte {
	t.Helper()
	root, err := moduleRoot()
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "connectors.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "<!-- example: "+kind+" -->")
	require.True(t, ok, "docs/connectors.md has no example marker for %s", kind)
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	require.True(t, ok, "no ```yaml block after the %s marker", kind)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok, "unterminated ```yaml block for %s", kind)
	return []byte(block)
}

// CompileDocExample loads the kind's example from docs/connectors.md the way
// `switchboard check` does (strict decode, then compile against a registry
// holding what register adds) and fails t on any error or warning. env
// answers the example's ${NAME} references.
func CompileDocExample(t testing.TB, kind string, register func(*connector.Registry), env map[string]string) *flow.Plan {
	t.Helper()
	getenv := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	c, err := config.Parse("docs/connectors.md#"+kind, DocExample(t, kind), getenv)
	require.NoError(t, err)
	r := connector.NewRegistry()
	register(r)
	p, err := flow.Compile(c, r)
	require.NoError(t, err)
	require.Empty(t, p.Warnings)
	return p
}
