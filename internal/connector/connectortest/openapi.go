package connectortest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// SpecsEnv names the environment variable that points at the directory of
// vendor OpenAPI specs. Unset, the specs are looked up in ../shared/specs
// beside the module root, where the project keeps its byte-for-byte vendor
// copies (they are not copied into the module: HubSpot's carry no licence).
const SpecsEnv = "SWITCHBOARD_SPECS"

// Spec is a parsed OpenAPI 3 document.
type Spec struct {
	name string
	doc  map[string]any
}

var (
	specsMu sync.Mutex // guards specs
	specs   = map[string]*Spec{}
)

// LoadSpec parses the named spec file (e.g. "twilio_api_v2010.json") from
// the specs directory, once per test binary. It skips t when the directory
// does not exist, so contract tests run wherever the specs are checked out.
func LoadSpec(t testing.TB, file string) *Spec {
	t.Helper()
	dir := os.Getenv(SpecsEnv)
	if dir == "" {
		root, err := moduleRoot()
		require.NoError(t, err)
		dir = filepath.Join(root, "..", "shared", "specs")
	}
	path := filepath.Join(dir, file)

	specsMu.Lock()
	defer specsMu.Unlock()
	if s, ok := specs[path]; ok {
		return s
	}
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("vendor spec %s not found; set %s to the directory holding it", path, SpecsEnv)
	}
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	require.NoError(t, dec.Decode(&doc), "parse %s", file)
	s := &Spec{name: file, doc: doc}
	specs[path] = s
	return s
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// SpecRequest is a request to check against a spec.
type SpecRequest struct {
	Method string
	// Path is the request path as sent, without the query, e.g.
	// "/2010-04-01/Accounts/AC…/Messages.json".
	Path string
	// ContentType is the request's media type without parameters; empty
	// when the request has no body.
	ContentType string
	// Body is the raw request body: JSON, or form-encoded for
	// application/x-www-form-urlencoded.
	Body string
}

// Check fails t with one error per way req departs from the spec: a path or
// method the spec lacks, a path parameter breaking its schema, a media type
// the operation does not accept, a missing required body, and body fields
// that are missing, unknown, of the wrong type or breaking a pattern, enum
// or e-mail format. Unknown object keys are errors unless the schema allows
// additional properties, so a misspelt field is caught.
func (s *Spec) Check(t testing.TB, req SpecRequest) {
	t.Helper()
	for _, e := range s.problems(req) {
		t.Errorf("%s: %s %s: %s", s.name, req.Method, req.Path, e)
	}
}

func (s *Spec) problems(req SpecRequest) []string {
	paths, _ := s.doc["paths"].(map[string]any)
	var item map[string]any
	var params map[string]string
	for _, tmpl := range slices.Sorted(maps.Keys(paths)) {
		if p, ok := matchPath(tmpl, req.Path); ok {
			item, _ = paths[tmpl].(map[string]any)
			params = p
			break
		}
	}
	if item == nil {
		return []string{"no such path in the spec"}
	}
	op, ok := item[strings.ToLower(req.Method)].(map[string]any)
	if !ok {
		return []string{"the path has no such method in the spec"}
	}

	v := &validator{spec: s}
	for _, p := range s.parameters(item, op) {
		if p["in"] != "path" {
			continue
		}
		name, _ := p["name"].(string)
		if val, ok := params[name]; ok {
			sch, _ := p["schema"].(map[string]any)
			v.form = true
			v.validate("path parameter "+name, val, sch)
		}
	}

	rb := s.resolve(op["requestBody"])
	if rb == nil {
		if req.Body != "" {
			v.errorf("request", "the operation takes no body")
		}
		return v.errs
	}
	if req.Body == "" {
		if rb["required"] == true {
			v.errorf("request", "body required")
		}
		return v.errs
	}
	content, _ := rb["content"].(map[string]any)
	media, ok := content[req.ContentType].(map[string]any)
	if !ok {
		v.errorf("request", "media type %q not accepted (spec: %s)", req.ContentType, strings.Join(slices.Sorted(maps.Keys(content)), ", "))
		return v.errs
	}
	schema, _ := media["schema"].(map[string]any)

	var body any
	switch req.ContentType {
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(req.Body)
		if err != nil {
			v.errorf("body", "not form-encoded: %v", err)
			return v.errs
		}
		m := map[string]any{}
		for k, vs := range vals {
			if len(vs) == 1 {
				m[k] = vs[0]
				continue
			}
			list := make([]any, len(vs))
			for i, s := range vs {
				list[i] = s
			}
			m[k] = list
		}
		body, v.form = m, true
	default:
		dec := json.NewDecoder(strings.NewReader(req.Body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			v.errorf("body", "not JSON: %v", err)
			return v.errs
		}
		v.form = false
	}
	v.validate("body", body, schema)
	return v.errs
}

// parameters returns the path item's and operation's parameters, resolved.
func (s *Spec) parameters(item, op map[string]any) []map[string]any {
	var out []map[string]any
	for _, src := range []any{item["parameters"], op["parameters"]} {
		list, _ := src.([]any)
		for _, p := range list {
			if m := s.resolve(p); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// resolve follows local "$ref"s ("#/components/schemas/X").
func (s *Spec) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	for range 32 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = s.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			obj, _ := cur.(map[string]any)
			cur = obj[strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")]
		}
		m, _ = cur.(map[string]any)
	}
	return m
}

// matchPath matches a request path against a path template such as
// "/crm/v3/objects/contacts/{contactId}" or ".../{Sid}.json".
func matchPath(tmpl, path string) (map[string]string, bool) {
	ts, ps := strings.Split(tmpl, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return nil, false
	}
	params := map[string]string{}
	for i, seg := range ts {
		if !strings.Contains(seg, "{") {
			if seg != ps[i] {
				return nil, false
			}
			continue
		}
		var names []string
		pat := "^" + paramRe.ReplaceAllStringFunc(regexp.QuoteMeta(seg), func(m string) string {
			names = append(names, strings.Trim(m, `\{}`))
			return "([^/]+)"
		}) + "$"
		got := regexp.MustCompile(pat).FindStringSubmatch(ps[i])
		if got == nil {
			return nil, false
		}
		for j, n := range names {
			dec, err := url.PathUnescape(got[j+1])
			if err != nil {
				return nil, false
			}
			params[n] = dec
		}
	}
	return params, true
}

// paramRe finds "{name}" in a regexp.QuoteMeta'd template segment.
var paramRe = regexp.MustCompile(`\\\{[^}]+\\\}`)

// validator checks values against a subset of JSON Schema: what vendor specs
// use to say which fields exist and what they hold.
type validator struct {
	spec *Spec
	// form is set for form-encoded bodies and path parameters, whose
	// scalars are all strings on the wire.
	form bool
	errs []string
}

func (v *validator) errorf(at, format string, args ...any) {
	v.errs = append(v.errs, at+": "+fmt.Sprintf(format, args...))
}

func (v *validator) validate(at string, val any, schema map[string]any) {
	schema = v.spec.resolve(schema)
	if schema == nil {
		return
	}
	if val == nil {
		if schema["nullable"] != true {
			v.errorf(at, "null not allowed")
		}
		return
	}
	if all, ok := schema["allOf"].([]any); ok {
		for _, sub := range all {
			v.validate(at, val, v.spec.resolve(sub))
		}
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		alts, ok := schema[key].([]any)
		if !ok {
			continue
		}
		matched := false
		for _, sub := range alts {
			alt := &validator{spec: v.spec, form: v.form}
			alt.validate(at, val, v.spec.resolve(sub))
			matched = matched || len(alt.errs) == 0
		}
		if !matched {
			v.errorf(at, "matches none of the %s alternatives", key)
		}
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool {
		return fmt.Sprint(e) == fmt.Sprint(val)
	}) {
		v.errorf(at, "%v is not one of %v", val, enum)
	}

	switch schema["type"] {
	case "object":
		v.object(at, val, schema)
	case "array":
		list, ok := val.([]any)
		if !ok {
			v.errorf(at, "want an array, got %T", val)
			return
		}
		if n, ok := intOf(schema["minItems"]); ok && len(list) < n {
			v.errorf(at, "want at least %d items, got %d", n, len(list))
		}
		if n, ok := intOf(schema["maxItems"]); ok && len(list) > n {
			v.errorf(at, "want at most %d items, got %d", n, len(list))
		}
		items, _ := schema["items"].(map[string]any)
		for i, item := range list {
			v.validate(fmt.Sprintf("%s[%d]", at, i), item, items)
		}
	case "string":
		str, ok := val.(string)
		if !ok {
			v.errorf(at, "want a string, got %T", val)
			return
		}
		v.str(at, str, schema)
	case "integer", "number":
		if !v.number(val, schema["type"] == "integer") {
			v.errorf(at, "want %s, got %v", schema["type"], val)
		}
	case "boolean":
		_, ok := val.(bool)
		if s, isStr := val.(string); v.form && isStr {
			ok = s == "true" || s == "false"
		}
		if !ok {
			v.errorf(at, "want a boolean, got %v", val)
		}
	}
}

func (v *validator) object(at string, val any, schema map[string]any) {
	obj, ok := val.(map[string]any)
	if !ok {
		v.errorf(at, "want an object, got %T", val)
		return
	}
	props, _ := schema["properties"].(map[string]any)
	required, _ := schema["required"].([]any)
	for _, r := range required {
		if name, _ := r.(string); obj[name] == nil {
			v.errorf(at, "required field %q missing", name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if p, ok := props[k].(map[string]any); ok {
			v.validate(at+"."+k, obj[k], p)
			continue
		}
		switch extra := schema["additionalProperties"].(type) {
		case map[string]any:
			v.validate(at+"."+k, obj[k], extra)
		case bool:
			if !extra {
				v.errorf(at, "field %q not in the spec", k)
			}
		default:
			if props != nil {
				v.errorf(at, "field %q not in the spec", k)
			}
		}
	}
}

func (v *validator) str(at, s string, schema map[string]any) {
	if n, ok := intOf(schema["minLength"]); ok && len([]rune(s)) < n {
		v.errorf(at, "want at least %d characters", n)
	}
	if n, ok := intOf(schema["maxLength"]); ok && len([]rune(s)) > n {
		v.errorf(at, "want at most %d characters", n)
	}
	if pat, ok := schema["pattern"].(string); ok {
		// Patterns RE2 cannot compile (lookarounds) are not checked.
		if re, err := regexp.Compile(pat); err == nil && !re.MatchString(s) {
			v.errorf(at, "%q does not match %s", s, pat)
		}
	}
	switch schema["format"] {
	case "email":
		if a, err := mail.ParseAddress(s); err != nil || a.Name != "" || a.Address != s {
			v.errorf(at, "%q is not an e-mail address", s)
		}
	case "uri":
		if u, err := url.Parse(s); err != nil || !u.IsAbs() {
			v.errorf(at, "%q is not an absolute URI", s)
		}
	}
}

func (v *validator) number(val any, integer bool) bool {
	var f float64
	switch n := val.(type) {
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return false
		}
	case float64:
		f = n
	case int:
		f = float64(n)
	case string:
		var err error
		if f, err = strconv.ParseFloat(n, 64); !v.form || err != nil {
			return false
		}
	default:
		return false
	}
	return !integer || f == math.Trunc(f)
}

func intOf(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return int(i), err == nil
}
