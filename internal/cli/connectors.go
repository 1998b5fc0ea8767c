package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

// kindDoc describes one connector kind, built from the same Kind the config
// loader decodes and validates systems with, so the listing cannot drift
// from what `check` accepts.
type kindDoc struct {
	Kind    string      `json:"kind"`
	Doc     string      `json:"doc"`
	Config  []configKey `json:"config"`
	Actions []actionDoc `json:"actions"`
}

// configKey describes one key of a kind's config, derived by reflection
// from the struct its NewConfig returns: the yaml tag is the key, the Go
// type gives the YAML type, and a `doc:"…"` struct tag the description.
type configKey struct {
	Key  string `json:"key"`
	Type string `json:"type"`
	Doc  string `json:"doc,omitempty"`
	// Keys are the nested keys of an object, or of the objects in a list
	// or map.
	Keys []configKey `json:"keys,omitempty"`
}

type actionDoc struct {
	Name    string     `json:"name"`
	Doc     string     `json:"doc"`
	Outputs string     `json:"outputs,omitempty"`
	Writes  string     `json:"writes,omitempty"`
	Inputs  []inputDoc `json:"inputs"`
}

type inputDoc struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	Doc      string `json:"doc,omitempty"`
}

func runConnectors(_ context.Context, e env, args []string) error {
	fs := flags("connectors", e)
	format := fs.String("format", "text", "output format: text or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usageError{fmt.Sprintf("--format: want text or json, got %q", *format)}
	}
	reg := app.Registry()
	kinds := reg.Kinds()
	if fs.NArg() > 0 {
		kinds = kinds[:0]
		for _, name := range fs.Args() {
			k, ok := reg.Kind(name)
			if !ok {
				var known []string
				for _, k := range reg.Kinds() {
					known = append(known, k.Name)
				}
				return usageError{fmt.Sprintf("unknown kind %q (known: %s)", name, strings.Join(known, ", "))}
			}
			kinds = append(kinds, k)
		}
	}
	docs := make([]kindDoc, 0, len(kinds))
	for _, k := range kinds {
		docs = append(docs, describeKind(k))
	}
	if *format == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Kinds []kindDoc `json:"kinds"`
		}{docs})
	}
	return writeConnectors(e.stdout, docs)
}

func describeKind(k *connector.Kind) kindDoc {
	d := kindDoc{Kind: k.Name, Doc: k.Doc, Config: configKeys(reflect.TypeOf(k.NewConfig()))}
	for _, a := range k.Actions {
		ad := actionDoc{Name: a.Name, Doc: a.Doc, Outputs: a.Outputs, Writes: a.Writes, Inputs: []inputDoc{}}
		for _, in := range a.Inputs {
			ad.Inputs = append(ad.Inputs, inputDoc{Name: in.Name, Required: in.Required, Doc: in.Doc})
		}
		d.Actions = append(d.Actions, ad)
	}
	return d
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[secret.Value]()
	sizeType     = reflect.TypeFor[config.ByteSize]()
)

// configKeys lists the keys of struct type t (or a pointer to one) the way
// config.Decoder decodes them: fields with a yaml name, in field order.
func configKeys(t reflect.Type) []configKey {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		typ, nested := yamlType(f.Type)
		keys = append(keys, configKey{Key: name, Type: typ, Doc: f.Tag.Get("doc"), Keys: nested})
	}
	return keys
}

// yamlType names the YAML type a Go type decodes from, and the keys of the
// objects it holds.
func yamlType(t reflect.Type) (string, []configKey) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		return "duration", nil
	case secretType:
		return "secret", nil
	case sizeType:
		return "size", nil
	}
	switch t.Kind() {
	case reflect.String:
		return "string", nil
	case reflect.Bool:
		return "bool", nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer", nil
	case reflect.Float32, reflect.Float64:
		return "number", nil
	case reflect.Slice, reflect.Array:
		elem, keys := yamlType(t.Elem())
		return "list of " + elem, keys
	case reflect.Map:
		elem, keys := yamlType(t.Elem())
		return "map of " + elem, keys
	case reflect.Struct:
		return "object", configKeys(t)
	}
	return "any", nil
}

// writeConnectors prints docs as indented text, one block per kind. Config
// keys are dotted paths (auth.oauth2.token_url), as in docs/connectors.md.
func writeConnectors(w io.Writer, docs []kindDoc) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, d := range docs {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "kind: %s\n  %s\n", d.Kind, d.Doc)
		fmt.Fprintln(tw, "  config:")
		writeKeys(tw, "", d.Config)
		fmt.Fprintln(tw, "  actions:")
		for _, a := range d.Actions {
			fmt.Fprintf(tw, "    SYSTEM.%s  %s\n", a.Name, a.Doc)
			if a.Outputs != "" {
				fmt.Fprintf(tw, "      output: %s\n", a.Outputs)
			}
			if a.Writes != "" {
				fmt.Fprintf(tw, "      writes entity: %s\n", a.Writes)
			}
			for _, in := range a.Inputs {
				req := "optional"
				if in.Required {
					req = "required"
				}
				fmt.Fprintf(tw, "      %s\t%s\t%s\n", in.Name, req, in.Doc)
			}
		}
	}
	return tw.Flush()
}

func writeKeys(w io.Writer, prefix string, keys []configKey) {
	for _, k := range keys {
		path := prefix + k.Key
		fmt.Fprintf(w, "    %s\t%s\t%s\n", path, k.Type, k.Doc)
		switch {
		case strings.HasPrefix(k.Type, "list of "):
			writeKeys(w, path+"[].", k.Keys)
		case strings.HasPrefix(k.Type, "map of "):
			writeKeys(w, path+".NAME.", k.Keys)
		default:
			writeKeys(w, path+".", k.Keys)
		}
	}
}
