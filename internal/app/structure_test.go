package app_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/switchboard-dev/switchboard"

// forbidden lists, per package, internal packages it must not import
// (directly or not). It encodes the dependency direction of GO-STYLE.md §1:
// leaves import no other part of Switchboard but store; connectors never
// import the engine side; only app picks implementations.
var forbidden = map[string][]string{
	"internal/store":              {"internal/"},
	"internal/signature":          {"internal/"},
	"internal/transform":          {"internal/"},
	"internal/secret":             {"internal/"},
	"internal/limit":              {"internal/"},
	"internal/leader":             {"internal/engine", "internal/delivery", "internal/ingest", "internal/app", "internal/store/", "internal/connector"},
	"internal/retention":          {"internal/engine", "internal/delivery", "internal/ingest", "internal/app", "internal/store/", "internal/connector"},
	"internal/batch":              {"internal/"},
	"internal/metrics":            {"internal/"},
	"internal/ownership":          {"internal/"},
	"internal/echo":               {"internal/"},
	"internal/tracing":            {"internal/"},
	"internal/connector":          {"internal/store", "internal/engine", "internal/delivery", "internal/flow", "internal/ingest", "internal/app"},
	"internal/config":             {"internal/store", "internal/engine", "internal/delivery", "internal/flow", "internal/ingest", "internal/app", "internal/connector"},
	"internal/flow":               {"internal/store", "internal/engine", "internal/delivery", "internal/ingest", "internal/app", "internal/connector/"},
	"internal/engine":             {"internal/delivery", "internal/ingest", "internal/app", "internal/store/sqlite", "internal/connector/"},
	"internal/delivery":           {"internal/engine", "internal/ingest", "internal/app", "internal/store/sqlite", "internal/connector/"},
	"internal/ingest":             {"internal/delivery", "internal/app", "internal/store/sqlite", "internal/connector/"},
	"internal/poll":               {"internal/delivery", "internal/ingest", "internal/app", "internal/store/sqlite", "internal/store/postgres", "internal/connector/"},
	"internal/connector/httpcall": {"internal/store", "internal/engine", "internal/delivery", "internal/flow", "internal/app"},
}

// allowedInternal lists the internal packages a leaf may still import.
var allowedInternal = map[string][]string{
	"internal/connector":          {"internal/secret"},
	"internal/config":             {"internal/secret"},
	"internal/metrics":            {"internal/store"},
	"internal/connector/httpcall": {"internal/connector", "internal/secret"},
}

func TestImportDirection(t *testing.T) {
	t.Parallel()
	for pkg, bad := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
			require.NoError(t, err)
			for _, dep := range strings.Fields(string(out)) {
				rel, ok := strings.CutPrefix(dep, module+"/")
				if !ok || rel == pkg {
					continue
				}
				allowed := false
				for _, a := range allowedInternal[pkg] {
					allowed = allowed || rel == a
				}
				if allowed {
					continue
				}
				for _, b := range bad {
					require.False(t, matches(rel, b), "%s must not depend on %s", pkg, rel)
				}
			}
		})
	}
}

// matches reports whether package rel falls under rule: "x/" means the
// packages below x, "x" means x and the packages below it.
func matches(rel, rule string) bool {
	if strings.HasSuffix(rule, "/") {
		return strings.HasPrefix(rel, rule)
	}
	return rel == rule || strings.HasPrefix(rel, rule+"/")
}

// TestPackageDocs requires a package doc comment in every package.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-json=Dir,ImportPath,GoFiles", module+"/...").Output()
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir, ImportPath string
			GoFiles         []string
		}
		require.NoError(t, dec.Decode(&p))
		documented := false
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			require.NoError(t, err)
			documented = documented || file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != ""
		}
		require.True(t, documented, "package %s has no doc comment", p.ImportPath)
	}
}
