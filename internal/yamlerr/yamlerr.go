// Package yamlerr rewrites gopkg.in/yaml.v3 decoding errors, which name only a line
// ("line 7: cannot unmarshal !!str `maybe` into bool"), so that each problem names the field path
// at that line ("split.canaryPercent (line 7): cannot unmarshal !!str `maybe` into bool").
package yamlerr

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// Describe returns one line per problem in err, each led by the field path found at its line of
// data; problems whose line holds no field keep their line number alone.
func Describe(data []byte, err error) string {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var root yaml.Node
	paths := map[int][]string{}
	if yaml.Unmarshal(data, &root) == nil {
		walk(&root, "", paths)
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if g := lineRE.FindStringSubmatch(m); g != nil {
			line, _ := strconv.Atoi(g[1])
			if p := commonPath(paths[line]); p != "" {
				m = fmt.Sprintf("%s (line %d): %s", p, line, g[2])
			}
		}
		out = append(out, m)
	}
	return strings.Join(out, "; ")
}

// walk records the paths of the mapping keys and sequence items on every line.
func walk(n *yaml.Node, path string, paths map[int][]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, path, paths)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			paths[k.Line] = append(paths[k.Line], p)
			walk(v, p, paths)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			paths[c.Line] = append(paths[c.Line], p)
			walk(c, p, paths)
		}
	}
}

// commonPath names the field of a line: the deepest path when the paths on it form one chain (a
// list item and its first key), their common ancestor when a flow collection puts sibling fields on
// one line (yaml.v3 reports lines, not columns).
func commonPath(ps []string) string {
	if len(ps) == 0 {
		return ""
	}
	common, siblings := ps[0], false
	for _, p := range ps[1:] {
		switch {
		case under(p, common): // one chain ("- weight: x": the item and its key): the deepest
			if !siblings {
				common = p
			}
		case under(common, p):
		default: // siblings: their common ancestor, from then on
			siblings = true
			for common != "" && !under(p, common) {
				common = parent(common)
			}
		}
	}
	return common
}

// under reports whether path p is q or lies under it.
func under(p, q string) bool {
	return p == q || strings.HasPrefix(p, q+".") || strings.HasPrefix(p, q+"[")
}

// parent drops the last segment of a path ("a.b[2]" -> "a.b", "a.b" -> "a").
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
