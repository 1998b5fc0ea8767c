// Package transform compiles and evaluates the jq expressions of a config
// (step inputs, conditions, idempotency keys) with gojq. Expressions are
// compiled once at load; evaluation is bounded in time and in result count so
// a bad expression cannot stall a worker.
package transform

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/itchyny/gojq"
)

// Limits applied to every evaluation.
const (
	// MaxResults caps how many values one expression may produce.
	MaxResults = 10000
	// Timeout caps how long one evaluation may run.
	Timeout = time.Second
)

// Expr is a compiled jq expression. It is safe for concurrent use.
type Expr struct {
	src  string
	vars []string
	// shown, when set, is the source as the config wrote it, with ${NAME}
	// references unexpanded: what errors and String quote (see Hide).
	shown string
	code  *gojq.Code
	// constant reports that the expression is a literal (no input, no
	// variables, no functions), so its value is known at load.
	constant bool
	// scalar is a constant's value when it is a string, number, boolean or
	// null: immutable, so Eval can hand out the one value. (A constant
	// object or array is left to gojq, which also folds it into one value
	// shared by every evaluation: callers must not change what Eval
	// returns.)
	scalar    any
	hasScalar bool
	// path is the field names of a plain path (.a, .a.b), which Eval
	// walks itself: most expressions of a config are one, and gojq (with
	// the timeout's timer) costs a few µs each.
	path []string
	// object is the fields of an object construction that Eval builds
	// itself (see plainObject): a step's body is often one.
	object []objectField
}

// objectField is one field of a plain object: a key, and a value that is
// a scalar literal, a plain path or a plain object.
type objectField struct {
	key string
	val *Expr
}

// SyntaxError is a compile error with the byte offset in the source where
// the parser stopped (for config errors that point at a column).
type SyntaxError struct {
	Offset int
	Err    error
}

func (e *SyntaxError) Error() string { return e.Err.Error() }
func (e *SyntaxError) Unwrap() error { return e.Err }

// Compile parses src. vars are the variable names (with $) the expression
// may use; their values are passed to Eval in the same order. Referring to
// any other variable is a compile error.
func Compile(src string, vars ...string) (*Expr, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		var off int
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			off = pe.Offset
		}
		return nil, &SyntaxError{Offset: off, Err: fmt.Errorf("jq syntax error in %q: %w", src, err)}
	}
	code, err := gojq.Compile(q, gojq.WithVariables(vars))
	if err != nil {
		return nil, fmt.Errorf("jq compile %q: %w", src, err)
	}
	e := &Expr{src: src, vars: vars, code: code, constant: isConstant(q), path: plainPath(q)}
	if e.object, err = plainObject(q, vars); err != nil {
		return nil, err
	}
	if v, ok := e.Constant(); ok {
		switch v.(type) {
		case string, int, float64, bool, nil:
			e.scalar, e.hasScalar = v, true
		}
	}
	return e, nil
}

// plainPath returns the field names of q when it is a plain path of
// names (.a, .a.b; not .a?, .["a"], .a[0]), else nil.
func plainPath(q *gojq.Query) []string {
	if q == nil || q.Op != 0 || len(q.FuncDefs) > 0 || len(q.Imports) > 0 || q.Meta != nil || q.Term == nil {
		return nil
	}
	t := q.Term
	if t.Type != gojq.TermTypeIndex || !plainName(t.Index) {
		return nil
	}
	path := []string{t.Index.Name}
	for _, s := range t.SuffixList {
		if s.Iter || s.Optional || !plainName(s.Index) {
			return nil
		}
		path = append(path, s.Index.Name)
	}
	return path
}

// plainObject returns the fields of q when it is an object construction
// whose keys are names or plain strings and whose values are scalar
// literals, plain paths or such objects ({id: .id, kind: "lead", contact:
// {email}}), else nil. Each value is compiled on its own (from its source,
// which gojq prints back) to find which of the three it is.
func plainObject(q *gojq.Query, vars []string) ([]objectField, error) {
	if q == nil || q.Op != 0 || len(q.FuncDefs) > 0 || len(q.Imports) > 0 || q.Meta != nil || q.Term == nil {
		return nil, nil
	}
	t := q.Term
	if t.Type != gojq.TermTypeObject || len(t.SuffixList) > 0 || len(t.Object.KeyVals) == 0 {
		return nil, nil
	}
	fields := make([]objectField, 0, len(t.Object.KeyVals))
	for _, kv := range t.Object.KeyVals {
		key := kv.Key
		switch {
		case key != "" && (key[0] == '$' || key[0] == '@'): // {$x}: a variable
			return nil, nil
		case key == "" && kv.KeyString != nil && kv.KeyString.Queries == nil:
			key = kv.KeyString.Str
		case key == "":
			return nil, nil // a computed key
		}
		if kv.Val == nil { // {a} is {a: .a}
			fields = append(fields, objectField{key: key, val: &Expr{path: []string{key}}})
			continue
		}
		val, err := Compile(kv.Val.String(), vars...)
		if err != nil {
			return nil, err
		}
		if !val.hasScalar && val.path == nil && val.object == nil {
			return nil, nil
		}
		fields = append(fields, objectField{key: key, val: val})
	}
	return fields, nil
}

func plainName(i *gojq.Index) bool {
	return i != nil && i.Name != "" && i.Str == nil && i.Start == nil && i.End == nil && !i.IsSlice
}

// walk is jq's .a.b on v: a missing field, or a field of null, is null.
// It reports false when a value on the way is neither an object nor null,
// where jq fails with an error (gojq then gives it).
func walk(v any, path []string) (any, bool) {
	for _, name := range path {
		switch m := v.(type) {
		case map[string]any:
			v = m[name]
		case nil:
		default:
			return nil, false
		}
	}
	return v, true
}

// Constant returns the expression's value when it is a literal ("POST",
// 42, {a: [1, "x"]}), which is known at load and can be checked then.
func (e *Expr) Constant() (any, bool) {
	if !e.constant {
		return nil, false
	}
	vals := make([]any, len(e.vars))
	v, err := e.Eval(context.Background(), nil, vals...)
	if err != nil {
		return nil, false
	}
	return v, true
}

// isConstant reports whether q is built only of literals.
func isConstant(q *gojq.Query) bool {
	if q == nil || len(q.FuncDefs) > 0 || len(q.Imports) > 0 || q.Meta != nil {
		return false
	}
	if q.Op != 0 {
		return q.Op == gojq.OpComma && isConstant(q.Left) && isConstant(q.Right)
	}
	t := q.Term
	if t == nil || len(t.SuffixList) > 0 {
		return false
	}
	switch t.Type {
	case gojq.TermTypeNull, gojq.TermTypeTrue, gojq.TermTypeFalse, gojq.TermTypeNumber:
		return true
	case gojq.TermTypeString:
		return t.Str != nil && len(t.Str.Queries) == 0
	case gojq.TermTypeArray:
		return t.Array.Query == nil || isConstant(t.Array.Query)
	case gojq.TermTypeQuery:
		return isConstant(t.Query)
	case gojq.TermTypeObject:
		for _, kv := range t.Object.KeyVals {
			if kv.KeyQuery != nil || kv.Val == nil || (kv.KeyString != nil && len(kv.KeyString.Queries) > 0) || !isConstant(kv.Val) {
				return false
			}
		}
		return true
	}
	return false
}

// MustCompile is Compile for expressions fixed in the source code.
func MustCompile(src string, vars ...string) *Expr {
	e, err := Compile(src, vars...)
	if err != nil {
		panic(err)
	}
	return e
}

// String returns the source of the expression.
func (e *Expr) String() string { return cmp.Or(e.shown, e.src) }

// Hide makes e's errors and String quote shown, the source as written
// before ${NAME} expansion, for a source that holds expanded values (which
// may be secrets: errors reach logs, stored attempts and even a webhook's
// answer). Its evaluation errors then keep only the kind of failure jq
// reports ("cannot add"), not the values it quotes: those may be the
// hidden ones, cut short or escaped past recognition.
func (e *Expr) Hide(shown string) {
	e.shown = shown
}

// Eval returns the first value the expression produces for input, or nil if
// it produces none. The value may be shared (a constant's, a part of input):
// callers must not change it.
func (e *Expr) Eval(ctx context.Context, input any, vals ...any) (any, error) {
	if v, ok := e.fast(input); ok {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	iter := e.code.RunWithContext(ctx, input, vals...)
	v, ok := iter.Next()
	if !ok {
		return nil, nil
	}
	if err, isErr := v.(error); isErr {
		return nil, e.wrap(err)
	}
	return v, nil
}

// fast evaluates a scalar literal, a plain path or a plain object without
// gojq. It reports false for any other expression, and when a path meets a
// value that is neither an object nor null, where jq fails (gojq then gives
// the error).
func (e *Expr) fast(input any) (any, bool) {
	switch {
	case e.hasScalar:
		return e.scalar, true
	case e.path != nil:
		return walk(input, e.path)
	case e.object != nil:
		m := make(map[string]any, len(e.object))
		for _, f := range e.object {
			v, ok := f.val.fast(input)
			if !ok {
				return nil, false
			}
			m[f.key] = v
		}
		return m, true
	}
	return nil, false
}

// EvalAll returns every value the expression produces (at most MaxResults).
func (e *Expr) EvalAll(ctx context.Context, input any, vals ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	iter := e.code.RunWithContext(ctx, input, vals...)
	var out []any
	for {
		v, ok := iter.Next()
		if !ok {
			return out, nil
		}
		if err, isErr := v.(error); isErr {
			var halt *gojq.HaltError
			if errors.As(err, &halt) && halt.Value() == nil {
				return out, nil
			}
			return nil, e.wrap(err)
		}
		if len(out) == MaxResults {
			return nil, fmt.Errorf("jq %q: more than %d results", e.String(), MaxResults)
		}
		out = append(out, v)
	}
}

func (e *Expr) wrap(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &timeoutError{src: e.String()}
	}
	if e.shown == "" { // nothing hidden (see Hide)
		return fmt.Errorf("jq %q: %w", e.String(), err)
	}
	kind, _, found := strings.Cut(err.Error(), ":")
	if !found {
		kind = "evaluation failed" // an error(...) of the expression's own
	}
	return &redactedError{msg: fmt.Sprintf("jq %q: %s (the values are not shown: the expression holds ${...} values)", e.String(), kind), err: err}
}

// redactedError is a jq error whose text keeps only the kind of failure;
// errors.Is and As still reach the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.err }

// timeoutError is an evaluation cut off at Timeout. It is
// context.DeadlineExceeded to errors.Is: a passing condition (a starved
// CPU), not a fault of the input, so callers can answer "retry later".
type timeoutError struct{ src string }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("jq %q: evaluation took longer than %s", e.src, Timeout)
}

func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// CutOff reports whether err, from an evaluation under ctx, is the
// evaluation cut off (ctx ended: the sender gone, shutdown; or the time
// limit on a starved CPU) rather than failed on the data: it says nothing
// about the input, and the caller answers "retry", not "bad input".
func CutOff(ctx context.Context, err error) bool {
	return err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded))
}
