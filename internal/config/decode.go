package config

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a config file, at a position.
type Error struct {
	File string
	Line int
	Col  int
	// Path is where in the document, e.g. "flows.lead.steps[0].do".
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorAt builds an Error at node n.
func ErrorAt(file string, n *yaml.Node, path, format string, args ...any) *Error {
	e := &Error{File: file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

// Decoder decodes YAML nodes into Go values strictly: unknown keys, wrong
// types and unset ${NAME} variables are errors that name file:line:col. It
// records every problem instead of stopping at the first.
type Decoder struct {
	File string
	// Getenv resolves ${NAME}; a variable it reports unset is an error.
	Getenv func(string) (string, bool)
	Errs   []error
}

func (d *Decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.Errs = append(d.Errs, ErrorAt(d.File, n, path, format, args...))
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	nodeType     = reflect.TypeFor[*yaml.Node]()
	sizeType     = reflect.TypeFor[ByteSize]()
)

// Decode decodes n into v (a pointer). path names n in errors.
func (d *Decoder) Decode(n *yaml.Node, path string, v any) {
	d.decode(n, path, reflect.ValueOf(v).Elem())
}

func (d *Decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], path, v)
		return
	case yaml.AliasNode:
		d.decode(n.Alias, path, v)
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(n))
		return
	}
	if isNull(n) {
		return // leave the zero value: the key is as good as absent
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, path, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping, got %s", describe(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				d.errorf(k, path, "key %q appears twice", k.Value)
				continue
			}
			seen[k.Value] = true
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, join(path, k.Value), elem)
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Interface:
		v.Set(reflect.ValueOf(d.generic(n, path)))
	default:
		d.decodeScalar(n, path, v)
	}
}

func (d *Decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", describe(n))
		return
	}
	fields := map[string][]int{}
	structFields(v.Type(), nil, fields)
	names := slices.Sorted(maps.Keys(fields))
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, join(path, k.Value), "unknown key (allowed: %s)", strings.Join(names, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, path, "key %q appears twice", k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, join(path, k.Value), v.FieldByIndex(idx))
	}
}

// structFields maps each YAML key of struct type t to its field's index
// path. A field tagged `yaml:",inline"` lends its struct's keys to t, so
// settings several sections share (a schedule, a paged listing) are
// declared once.
func structFields(t reflect.Type, at []int, out map[string][]int) {
	for i := range t.NumField() {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		idx := append(slices.Clone(at), i)
		if name == "" && opts == "inline" && t.Field(i).Type.Kind() == reflect.Struct {
			structFields(t.Field(i).Type, idx, out)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out[name] = idx
	}
}

func (d *Decoder) decodeScalar(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "want %s, got %s", want(v.Type()), describe(n))
		return
	}
	s, ok := d.expand(n, path)
	if !ok {
		return
	}
	// Errors quote the value as written: after ${NAME} expansion it may be
	// a secret.
	shown := n.Value
	switch {
	case v.Type() == durationType:
		dur, err := ParseDuration(s)
		if err != nil {
			d.errorf(n, path, "want a duration such as 30s, 5m or 30d, got %q", shown)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == sizeType:
		size, err := ParseByteSize(s)
		if err != nil {
			d.errorf(n, path, "want a size such as 1048576 or 1MiB, got %q", shown)
			return
		}
		v.SetInt(int64(size))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || n.Tag == "!!str" && n.Style != 0 {
			d.errorf(n, path, "want true or false, got %q", shown)
			return
		}
		v.SetBool(b)
	case v.CanInt():
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, path, "want an integer, got %q", shown)
			return
		}
		v.SetInt(i)
	case v.CanFloat():
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.errorf(n, path, "want a number, got %q", shown)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(n, path, "cannot decode into %s", v.Type())
	}
}

// generic decodes into plain Go values, for fields typed any.
func (d *Decoder) generic(n *yaml.Node, path string) any {
	switch n.Kind {
	case yaml.AliasNode:
		return d.generic(n.Alias, path)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = d.generic(n.Content[i+1], join(path, n.Content[i].Value))
		}
		return m
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, item := range n.Content {
			out[i] = d.generic(item, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	}
	if isNull(n) {
		return nil
	}
	s, _ := d.expand(n, path)
	switch n.ShortTag() {
	case "!!int":
		if i, err := strconv.ParseInt(s, 0, 64); err == nil {
			return i
		}
	case "!!float":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case "!!bool":
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	}
	return s
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// References returns the names of the ${NAME} references in s, as written
// (a $$ escape is not one).
func References(s string) []string {
	var names []string
	for _, m := range envRef.FindAllStringSubmatch(s, -1) {
		if m[1] != "" {
			names = append(names, m[1])
		}
	}
	return names
}

// expand replaces ${NAME} with the environment variable's value ($$ is a
// literal $). An unset variable is an error; its value is never echoed.
func (d *Decoder) expand(n *yaml.Node, path string) (string, bool) {
	if !strings.Contains(n.Value, "$") {
		return n.Value, true
	}
	ok := true
	out := envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		var val string
		var set bool
		if d.Getenv != nil {
			val, set = d.Getenv(name)
		}
		if !set {
			d.errorf(n, path, "environment variable %s is not set", name)
			ok = false
		}
		return val
	})
	return out, ok
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case slices.Contains([]reflect.Kind{reflect.Int, reflect.Int64, reflect.Int32}, t.Kind()):
		return "an integer"
	}
	return "a scalar"
}

// ParseDuration is time.ParseDuration plus a "d" suffix for whole days
// ("30d"), which retention periods want.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// ByteSize is a size in bytes written as an integer or with a unit:
// 512, 64KiB, 1MiB, 10MB.
type ByteSize int64

// ParseByteSize parses a size such as "1MiB".
func ParseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a size such as 1048576 or 1MiB, got %q", s)
	}
	return ByteSize(n * mult), nil
}
