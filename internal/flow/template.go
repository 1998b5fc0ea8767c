package flow

import (
	"context"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Template is a step's `with:` tree: mappings and lists whose leaves are jq
// expressions. Evaluating it builds the action's input value.
type Template struct {
	path string
	expr *transform.Expr
	keys []string
	obj  map[string]*Template
	list []*Template
}

// maxTemplateNodes bounds a step's with: tree. YAML aliases can make a
// small file expand exponentially; yaml.v3's own guard does not apply to
// nodes decoded as *yaml.Node.
const maxTemplateNodes = 10000

func (cp *compiler) template(path string, n *yaml.Node) *Template {
	budget := maxTemplateNodes
	t := cp.templateNode(path, n, &budget)
	if budget < 0 {
		cp.errorf(n, path, "more than %d values (are YAML aliases expanding it?)", maxTemplateNodes)
		return nil
	}
	return t
}

func (cp *compiler) templateNode(path string, n *yaml.Node, budget *int) *Template {
	*budget--
	if *budget < 0 {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t := &Template{path: path}
	switch n.Kind {
	case yaml.MappingNode:
		t.obj = map[string]*Template{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			t.keys = append(t.keys, k)
			t.obj[k] = cp.templateNode(path+"."+k, n.Content[i+1], budget)
		}
	case yaml.SequenceNode:
		t.list = []*Template{}
		for i, item := range n.Content {
			t.list = append(t.list, cp.templateNode(fmt.Sprintf("%s[%d]", path, i), item, budget))
		}
	default:
		src := n.Value
		if n.ShortTag() == "!!null" {
			src = "null"
		}
		e, err := transform.Compile(src, StepVars...)
		if err != nil {
			cp.errorf(n, path, "%v", err)
		}
		t.expr = e
	}
	return t
}

// Eval evaluates the template against the event payload, the outputs of
// earlier steps ($steps) and the event metadata ($event). Errors name the
// path of the failing expression.
func (t *Template) Eval(ctx context.Context, payload any, steps, event map[string]any) (any, error) {
	switch {
	case t.expr != nil:
		v, err := t.expr.Eval(ctx, payload, steps, event)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.path, err)
		}
		return v, nil
	case t.obj != nil:
		m := make(map[string]any, len(t.obj))
		for _, k := range t.keys {
			v, err := t.obj[k].Eval(ctx, payload, steps, event)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	default:
		out := make([]any, len(t.list))
		for i, item := range t.list {
			v, err := item.Eval(ctx, payload, steps, event)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
}
