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

// commonPath is the deepest path that all paths on a line lie under: the field itself on a line
// with one, the enclosing field when a flow collection puts several on one line (yaml.v3 reports
// lines, not columns).
func commonPath(ps []string) string {
	if len(ps) == 0 {
		return ""
	}
	common := ps[0]
	for _, p := range ps[1:] {
		switch {
		case strings.HasPrefix(p, common+".") || strings.HasPrefix(p, common+"[") || p == common:
		case strings.HasPrefix(common, p+".") || strings.HasPrefix(common, p+"["):
			common = p
		default:
			for common != "" && !strings.HasPrefix(p, common+".") && !strings.HasPrefix(p, common+"[") && p != common {
				common = parent(common)
			}
		}
	}
	return common
}

// parent drops the last segment of a path ("a.b[2]" -> "a.b", "a.b" -> "a").
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
