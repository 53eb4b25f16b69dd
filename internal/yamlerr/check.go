package yamlerr

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong in a YAML document, in the words of the document's author: the field
// path as written in the file, its line, what is wrong and how to fix it. It never names a Go type.
type Problem struct {
	Path string // e.g. steps[1].duration; empty for the document itself
	Line int    // 0 when unknown
	Msg  string // "what is wrong; how to fix it"
}

func (p Problem) String() string {
	switch {
	case p.Path != "" && p.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Msg)
	case p.Path != "":
		return p.Path + ": " + p.Msg
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	}
	return p.Msg
}

// Hint returns a short description of what a field holds ("the canary's share in percent, e.g. 2.5")
// for a path with its list indexes dropped ("steps.weight"), or "" for the default description of its
// type.
type Hint func(path string) string

var durationType = reflect.TypeFor[time.Duration]()

// Shaper is implemented by a type whose YAML mapping has other fields than its Go struct (sections
// registered at run time, decoded by its own UnmarshalYAML): Check walks the struct type YAMLShape
// returns instead. YAMLShape is called on the type's zero value.
type Shaper interface {
	YAMLShape() reflect.Type
}

// SelfChecked is implemented by a type whose UnmarshalYAML accepts several shapes (a word, a list or
// a mapping) and explains its own mistakes with their lines: Check leaves its node alone, and a
// decode error of it reaches the user in its own words (Describe).
type SelfChecked interface {
	YAMLSelfChecked()
}

// Check walks the YAML document data against the fields of out's type (a pointer to a struct, read
// through its `yaml` tags) and returns every problem at once: unknown fields with the closest known
// name, values of the wrong kind (a number without a unit where a duration is due, text where a number
// is due, ...). It does not decode; a document Check finds nothing wrong with may still fail its
// type's own checks. A document that is not YAML at all is one problem with the parser's line.
func Check(data []byte, out any, hint Hint) []Problem {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return []Problem{syntaxProblem(err)}
	}
	c := checker{hint: hint}
	t := reflect.TypeOf(out)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	c.walk(&root, t, "")
	return c.problems
}

// syntaxProblem turns a parser error ("yaml: line 3: mapping values are not allowed in this
// context") into a Problem with its line.
func syntaxProblem(err error) Problem {
	m := strings.TrimPrefix(err.Error(), "yaml: ")
	if g := lineRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		return Problem{Line: line, Msg: g[2] + "; this is not valid YAML: check the indentation and the ':' after every field name"}
	}
	return Problem{Msg: m + "; this is not valid YAML"}
}

type checker struct {
	hint     Hint
	problems []Problem
}

func (c *checker) add(path string, n *yaml.Node, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// walk checks node n against type t; path is n's field path.
func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		for _, d := range n.Content {
			c.walk(d, t, path)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // left out: the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if sh, ok := reflect.Zero(t).Interface().(Shaper); ok {
		t = sh.YAMLShape()
	}
	if _, ok := reflect.Zero(t).Interface().(SelfChecked); ok {
		return
	}
	switch {
	case t == durationType:
		c.duration(n, path)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.add(path, n, "%s where a group of fields is due; write the fields below %s, indented, one per line (%s)", c.found(n), leaf(path), strings.Join(fieldNames(t), ", "))
			return
		}
		c.fields(n, t, path)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(path, n, "%s where name: value pairs are due; write them below %s, indented, one per line", c.found(n), leaf(path))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		if n.Kind != yaml.SequenceNode {
			c.add(path, n, "%s where a list is due; write each item on its own line starting with '- ', or [a, b]", c.found(n))
			return
		}
		for i, item := range n.Content {
			c.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		c.scalar(n, t, path)
	}
}

// fields checks the keys of a mapping against the struct's fields and walks their values.
func (c *checker) fields(n *yaml.Node, t reflect.Type, path string) {
	known := structFields(t)
	names := fieldNames(t)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" { // a merge key: its mapping holds fields of this struct
			c.walk(v, t, path)
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			c.add(p, k, "given twice; keep one")
			continue
		}
		seen[k.Value] = true
		ft, ok := known[k.Value]
		if !ok {
			if s := suggest(k.Value, names); s != "" {
				c.add(p, k, "unknown field %q; did you mean %s?", k.Value, s)
			} else {
				c.add(p, k, "unknown field %q; the fields here are %s", k.Value, strings.Join(names, ", "))
			}
			continue
		}
		c.walk(v, ft, p)
	}
}

// scalar checks a value that must be a single number, flag or text.
func (c *checker) scalar(n *yaml.Node, t reflect.Type, path string) {
	want := c.want(t, path)
	if n.Kind != yaml.ScalarNode {
		c.add(path, n, "%s where %s is due; write one value", c.found(n), want)
		return
	}
	tag := n.ShortTag()
	switch t.Kind() {
	case reflect.Bool:
		// yaml.v3 still reads YAML 1.1's yes/no/on/off into a bool field.
		if tag != "!!bool" && !slices.Contains(yaml11Bools, n.Value) {
			c.add(path, n, "%q is not true or false; write true or false", n.Value)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f, ok := number(n)
		switch {
		case !ok:
			c.add(path, n, "%q is not a number; write %s", n.Value, want)
		case f != math.Trunc(f):
			c.add(path, n, "%s is not a whole number; write %s", n.Value, want)
		case f < 0 && t.Kind() >= reflect.Uint:
			c.add(path, n, "%s is negative; write %s", n.Value, want)
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := number(n); !ok {
			c.add(path, n, "%q is not a number; write %s", n.Value, want)
		}
	case reflect.String:
		// Any scalar reads as text.
	}
}

var yaml11Bools = []string{"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}

// duration checks a time.Duration value: text with a unit.
func (c *checker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		c.add(path, n, "%s where a duration is due; write one duration such as 30s, 5m or 1h", c.found(n))
		return
	}
	if n.ShortTag() == "!!int" || n.ShortTag() == "!!float" {
		c.add(path, n, "%s has no unit; write a duration with its unit, e.g. %ss (seconds) or %sm (minutes)", n.Value, n.Value, n.Value)
		return
	}
	if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
		c.add(path, n, "%q is not a duration; write a number with a unit (ms, s, m, h), e.g. 30s, 5m or 1h30m", n.Value)
	}
}

// number reads an !!int or !!float scalar.
func number(n *yaml.Node) (float64, bool) {
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			var u uint64
			if err := n.Decode(&u); err != nil {
				return 0, false
			}
			return float64(u), true
		}
		return float64(i), true
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

// want describes what a scalar field holds, in the document's words.
func (c *checker) want(t reflect.Type, path string) string {
	if c.hint != nil {
		if h := c.hint(stripIndexes(path)); h != "" {
			return h
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number, e.g. 3"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of 0 or more, e.g. 3"
	case reflect.Float32, reflect.Float64:
		return "a number, e.g. 2.5"
	}
	return "one value (text)"
}

// found names what a node holds, for "X where Y is due".
func (c *checker) found(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a group of fields"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// structFields maps the YAML names of t's fields (inline structs flattened) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default key
		}
		out[name] = f.Type
	}
	return out
}

// fieldNames are t's YAML field names in declaration order.
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fs := structFields(t)
	names := make([]string, 0, len(fs))
	for k := range fs {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// suggest returns the known name closest to name (the same name in another case, or a few letters
// changed: one for names under 4 letters, else 2 or a third of them), or "".
func suggest(name string, known []string) string {
	best, bestD := "", math.MaxInt
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k
		}
		if d := distance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	limit := 1 // short names: one letter off
	if n := len([]rune(name)); n >= 4 {
		limit = max(2, n/3) // alfa → alpha, stabel → stable, wieght → weight
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// distance is the Damerau–Levenshtein distance (optimal string alignment) between a and b: inserted,
// deleted, changed and swapped letters (wieght → weight is 1).
func distance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// leaf is the last field name of a path ("the document" for the root).
func leaf(path string) string {
	if path == "" {
		return "the top of the file"
	}
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

// stripIndexes drops list indexes from a path: steps[1].weight → steps.weight.
func stripIndexes(p string) string {
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Lines maps every field path of a YAML document (as Check and Describe name them) to its line, so
// that a problem found after decoding can say where its field is written. A document that is not
// YAML maps nothing.
func Lines(data []byte) map[string]int {
	var root yaml.Node
	out := map[string]int{}
	if yaml.Unmarshal(data, &root) != nil {
		return out
	}
	paths := map[int][]string{}
	walk(&root, "", paths)
	for line, ps := range paths {
		for _, p := range ps {
			if l, ok := out[p]; !ok || line < l {
				out[p] = line
			}
		}
	}
	return out
}
