package transform

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest in a decoded body, the
// same limit as encoding/json's. Deeper input is rejected (the decoder
// recurses once per level; the limit keeps its stack a few MB at most).
const MaxDepth = 10000

// DecodeError is input that is not exactly one JSON value. Offset is the
// byte offset (from 0) of the first byte that is wrong, or the length of the
// input when it ends too soon.
type DecodeError struct {
	Offset int
	Msg    string
}

func (e *DecodeError) Error() string { return e.Msg + " at offset " + strconv.Itoa(e.Offset) }

// Decode parses JSON into the values jq works on: map[string]any, []any,
// string, json.Number (numbers stay exact, so large IDs are not rounded
// through float64), bool and nil. The data must hold exactly one value,
// with only whitespace around it.
//
// The result is the same as encoding/json's (Decoder.UseNumber into an
// any) for every input it accepts, including its repairs: invalid UTF-8
// and unpaired \u surrogates in strings become U+FFFD, and of duplicate
// object keys the last wins. It rejects what encoding/json rejects, with a
// *DecodeError. It is a single pass over the bytes, with 2–6 times less CPU
// than encoding/json's scanner followed by its value builder
// (BenchmarkDecode; docs/performance.md).
func Decode(data []byte) (any, error) {
	d := decoders.Get().(*decoder)
	d.data = data
	v, err := d.top()
	d.release()
	return v, err
}

// decoders keeps decoders with their scratch space between calls.
var decoders = sync.Pool{New: func() any { return new(decoder) }}

// A decoder holds the state of one Decode: the input, the position, and
// scratch stacks of the array elements and object members being read
// (each container is then allocated once, at its final size).
type decoder struct {
	data []byte
	i    int
	buf  []byte // an unescaped string being built
	vals []any  // elements of the open arrays
	kvs  []member
	keys keyCache
}

// keyCache holds recent object keys, so that a key seen before, in this
// body (an array of alike objects) or in an earlier one (the same
// webhook's next event), is not allocated again. It is direct-mapped:
// a key replaces the one of the same hash.
type keyCache [256]string

// maxCachedKey is the longest key kept in a keyCache.
const maxCachedKey = 32

func (c *keyCache) intern(b []byte) string {
	if len(b) > maxCachedKey || len(b) == 0 {
		return string(b)
	}
	// Hash the length and the first and last (up to) 8 bytes.
	var h uint64
	if len(b) >= 8 {
		h = binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[len(b)-8:]), 31)
	} else {
		for _, c := range b {
			h = h<<8 | uint64(c)
		}
	}
	h = (h ^ uint64(len(b))) * 0x9E3779B97F4A7C15
	e := &c[h>>56]
	if *e != string(b) {
		*e = string(b)
	}
	return *e
}

type member struct {
	key string
	val any
}

// maxScratch is the largest scratch a pooled decoder keeps (in elements or
// bytes); a rare huge body does not pin its scratch for good.
const maxScratch = 1 << 16

func (d *decoder) release() {
	// A closed container clears its part of the stacks; after an error
	// the open ones still hold values.
	clear(d.vals)
	clear(d.kvs)
	d.data, d.i, d.buf, d.vals, d.kvs = nil, 0, d.buf[:0], d.vals[:0], d.kvs[:0]
	if cap(d.buf) > maxScratch || cap(d.vals) > maxScratch || cap(d.kvs) > maxScratch {
		return
	}
	decoders.Put(d)
}

func (d *decoder) top() (any, error) {
	d.skipSpace()
	if d.i == len(d.data) {
		return nil, &DecodeError{Offset: d.i, Msg: "no JSON value (empty input)"}
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i < len(d.data) {
		return nil, &DecodeError{Offset: d.i, Msg: "unexpected data after the JSON value"}
	}
	return v, nil
}

// value reads the value at d.i (which is not the end of the input) inside
// depth open arrays and objects.
func (d *decoder) value(depth int) (any, error) {
	switch c := d.data[d.i]; c {
	case '{':
		return d.object(depth + 1)
	case '[':
		return d.array(depth + 1)
	case '"':
		b, err := d.str()
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || c-'0' <= 9 {
			return d.number()
		}
		return nil, d.invalid(d.i, "looking for beginning of value")
	}
}

func (d *decoder) object(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, d.tooDeep()
	}
	d.i++
	d.skipSpace()
	if d.i < len(d.data) && d.data[d.i] == '}' {
		d.i++
		return map[string]any{}, nil
	}
	base := len(d.kvs)
	for {
		if d.i == len(d.data) {
			return nil, d.eof("in object")
		}
		if d.data[d.i] != '"' {
			return nil, d.invalid(d.i, "looking for beginning of object key string")
		}
		b, err := d.str()
		if err != nil {
			return nil, err
		}
		key := d.keys.intern(b)
		d.skipSpace()
		if d.i == len(d.data) {
			return nil, d.eof("in object")
		}
		if d.data[d.i] != ':' {
			return nil, d.invalid(d.i, "after object key")
		}
		d.i++
		d.skipSpace()
		if d.i == len(d.data) {
			return nil, d.eof("in object")
		}
		val, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.kvs = append(d.kvs, member{key, val})
		d.skipSpace()
		if d.i == len(d.data) {
			return nil, d.eof("in object")
		}
		switch d.data[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case '}':
			d.i++
			kvs := d.kvs[base:]
			m := make(map[string]any, len(kvs))
			for _, kv := range kvs {
				m[kv.key] = kv.val // of duplicate keys the last wins
			}
			clear(kvs)
			d.kvs = d.kvs[:base]
			return m, nil
		default:
			return nil, d.invalid(d.i, "after object key:value pair")
		}
	}
}

func (d *decoder) array(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, d.tooDeep()
	}
	d.i++
	d.skipSpace()
	if d.i < len(d.data) && d.data[d.i] == ']' {
		d.i++
		return []any{}, nil
	}
	base := len(d.vals)
	for {
		if d.i == len(d.data) {
			return nil, d.eof("in array")
		}
		val, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.vals = append(d.vals, val)
		d.skipSpace()
		if d.i == len(d.data) {
			return nil, d.eof("in array")
		}
		switch d.data[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case ']':
			d.i++
			vals := d.vals[base:]
			a := make([]any, len(vals))
			copy(a, vals)
			clear(vals)
			d.vals = d.vals[:base]
			return a, nil
		default:
			return nil, d.invalid(d.i, "after array element")
		}
	}
}

// number reads a number as its text, checked against JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() (any, error) {
	data, start, i := d.data, d.i, d.i
	if data[i] == '-' {
		i++
	}
	if i == len(data) {
		return nil, d.eof("in numeric literal")
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c-'1' <= 8:
		i = skipDigits(data, i+1)
	default:
		return nil, d.invalid(i, "in numeric literal")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i == len(data) {
			return nil, d.eof("in numeric literal")
		}
		if data[i]-'0' > 9 {
			return nil, d.invalid(i, "after decimal point in numeric literal")
		}
		i = skipDigits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i == len(data) {
			return nil, d.eof("in numeric literal")
		}
		if data[i]-'0' > 9 {
			return nil, d.invalid(i, "in exponent of numeric literal")
		}
		i = skipDigits(data, i+1)
	}
	d.i = i
	return json.Number(data[start:i]), nil
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i]-'0' <= 9 {
		i++
	}
	return i
}

// literal reads true, false or null, whose first byte is at d.i.
func (d *decoder) literal(lit string) error {
	if len(d.data)-d.i >= len(lit) && string(d.data[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return nil
	}
	for k := 1; k < len(lit); k++ {
		j := d.i + k
		if j == len(d.data) {
			return d.eof("in literal " + lit)
		}
		if d.data[j] != lit[k] {
			return d.invalid(j, "in literal "+lit+" (expecting "+quoteChar(lit[k:k+1])+")")
		}
	}
	panic("unreachable")
}

func (d *decoder) skipSpace() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// plain marks the bytes a string literal holds as they are: printable
// ASCII other than '"' and '\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// str reads the string literal whose opening quote is at d.i and returns
// its text, which stays valid until the next call. Like encoding/json, it
// replaces each byte of invalid UTF-8 and each unpaired surrogate escape
// with U+FFFD, and rejects control characters.
func (d *decoder) str() ([]byte, error) {
	data := d.data
	start := d.i + 1
	i := start
	// A string without escapes or invalid UTF-8 is copied out of data at
	// the end; from the first one on, the text is built in buf, and lit is
	// where the run not yet copied to buf begins.
	built, lit := false, start
	buf := d.buf[:0]
	for {
		// Skip plain ASCII 8 bytes at a time: a byte is flagged if it is
		// below 0x20, is '"' or '\', or has its high bit set. Borrows
		// only flag bytes above a flagged one, so the lowest flag is a
		// real one.
		for i+8 <= len(data) {
			x := binary.LittleEndian.Uint64(data[i:])
			flags := ((x - ones*0x20) | ((x ^ ones*'"') - ones) | ((x ^ ones*'\\') - ones) | x) & highs
			if flags != 0 {
				i += bits.TrailingZeros64(flags) >> 3
				break
			}
			i += 8
		}
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i == len(data) {
			return nil, d.eof("in string literal")
		}
		switch c := data[i]; {
		case c == '"':
			d.i = i + 1
			if !built {
				return data[start:i], nil
			}
			buf = append(buf, data[lit:i]...)
			d.buf = buf
			return buf, nil
		case c == '\\':
			buf = append(buf, data[lit:i]...)
			built = true
			var err error
			if buf, i, err = d.escape(buf, i); err != nil {
				return nil, err
			}
			lit = i
		case c < 0x20:
			return nil, d.invalid(i, "in string literal")
		default: // c >= utf8.RuneSelf
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				buf = append(buf, data[lit:i]...)
				buf = utf8.AppendRune(buf, utf8.RuneError)
				built, lit = true, i+1
			}
			i += size
		}
	}
}

// escape appends the character of the escape sequence at data[i] ('\') to
// buf and returns the offset after the sequence.
func (d *decoder) escape(buf []byte, i int) ([]byte, int, error) {
	data := d.data
	if i+1 == len(data) {
		return buf, i, d.eof("in string escape code")
	}
	switch c := data[i+1]; c {
	case '"', '\\', '/':
		return append(buf, c), i + 2, nil
	case 'b':
		return append(buf, '\b'), i + 2, nil
	case 'f':
		return append(buf, '\f'), i + 2, nil
	case 'n':
		return append(buf, '\n'), i + 2, nil
	case 'r':
		return append(buf, '\r'), i + 2, nil
	case 't':
		return append(buf, '\t'), i + 2, nil
	case 'u':
		for j := i + 2; j < i+6; j++ {
			if j == len(data) {
				return buf, i, d.eof("in \\u hexadecimal character escape")
			}
			if unhex(data[j]) < 0 {
				return buf, i, d.invalid(j, "in \\u hexadecimal character escape")
			}
		}
		r := getu4(data[i:])
		i += 6
		if utf16.IsSurrogate(r) {
			// A pair is taken only if the next escape completes it; else
			// this half alone becomes U+FFFD, and the next escape is read
			// on its own (as encoding/json does).
			if dec := utf16.DecodeRune(r, getu4(data[i:])); dec != utf8.RuneError {
				return utf8.AppendRune(buf, dec), i + 6, nil
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(buf, r), i, nil
	default:
		return buf, i, d.invalid(i+1, "in string escape code")
	}
}

// getu4 returns the code unit of the \uXXXX escape at the start of s, or -1
// if s does not start with one.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		h := unhex(c)
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// invalid is a syntax error at data[at], worded as encoding/json words it:
// "invalid character 'x' after object key".
func (d *decoder) invalid(at int, context string) error {
	_, size := utf8.DecodeRune(d.data[at:])
	return &DecodeError{Offset: at, Msg: "invalid character " + quoteChar(string(d.data[at:at+size])) + " " + context}
}

func (d *decoder) eof(context string) error {
	return &DecodeError{Offset: len(d.data), Msg: "unexpected EOF " + context}
}

func (d *decoder) tooDeep() error {
	return &DecodeError{Offset: d.i, Msg: "exceeded max depth of " + strconv.Itoa(MaxDepth) + " nested arrays and objects"}
}

// quoteChar quotes a character (or a byte of invalid UTF-8) for an error
// message: 'x', '\n', '\xff'.
func quoteChar(s string) string {
	switch s {
	case "'":
		return `'\''`
	case `"`:
		return `'"'`
	}
	q := strconv.Quote(s)
	return "'" + q[1:len(q)-1] + "'"
}
