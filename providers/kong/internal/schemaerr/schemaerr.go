// Package schemaerr flattens the fields of a Kong schema violation (kong/db/errors.lua: nested
// field errors, "@entity" for errors of the whole entity) into the "field: message" parts Kong's
// message lists. The Admin API client (providers/kong) explains Kong's answers with it; the test
// server (providers/kong/kongtest) writes them.
package schemaerr

import (
	"fmt"
	"sort"
	"strings"
)

// Parts returns the field errors of fields as "a.b: message" (an entity error as its message alone),
// sorted.
func Parts(fields map[string]any) []string {
	var parts []string
	flatten("", fields, &parts)
	sort.Strings(parts)
	return parts
}

func flatten(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, e, out)
		}
	case []any:
		for _, e := range x {
			flatten(prefix, e, out)
		}
	default:
		if prefix == "@entity" || strings.HasSuffix(prefix, ".@entity") {
			*out = append(*out, fmt.Sprint(x))
			return
		}
		*out = append(*out, fmt.Sprintf("%s: %v", prefix, x))
	}
}
