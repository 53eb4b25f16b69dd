// Command vectorcount reads `go test -json` of the Kayenta vector tests (TestKayentaVectors in
// ./analysis and ./judge) on stdin and prints the one count line README.md quotes: how many of the
// upstream cases under the directory given as its argument were replayed by either package. Both
// packages replay some kinds (Mann-Whitney, effect sizes, ...), so the per-package counts overlap;
// this counts each case once. It exits 1 if a test failed. `make vectors` runs it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go test -json -run '^TestKayentaVectors$' ./analysis/ ./judge/ | vectorcount testdata/kayenta/upstream")
		os.Exit(2)
	}
	total, err := countVectors(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "vectorcount:", err)
		os.Exit(2)
	}
	ran := map[string]map[string]bool{} // case -> packages that replayed it
	perPkg := map[string]int{}
	var failed []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // a build error: show it
			continue
		}
		pkg := filepath.Base(e.Package)
		switch {
		case e.Action == "fail" && e.Test != "":
			failed = append(failed, pkg+" "+e.Test)
		case e.Action == "fail":
			failed = append(failed, pkg)
		case e.Action == "pass" && strings.HasPrefix(e.Test, "TestKayentaVectors/"):
			if ran[e.Test] == nil {
				ran[e.Test] = map[string]bool{}
			}
			ran[e.Test][pkg] = true
			perPkg[pkg]++
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		fmt.Printf("kayenta vectors: FAILED: %s\n", strings.Join(failed, "; "))
		os.Exit(1)
	}
	both := 0
	for _, p := range ran {
		if len(p) > 1 {
			both++
		}
	}
	fmt.Printf("kayenta vectors: ran %d of the %d cases of Kayenta's test suites (analysis %d, judge %d, %d of them by both); the other %d are documented as not applicable: go test -v -run '^TestKayentaVectors$' ./judge/ lists them with the reason\n",
		len(ran), total, perPkg["analysis"], perPkg["judge"], both, total-len(ran))
	if len(ran) == 0 {
		os.Exit(1)
	}
}

// countVectors counts the cases in the vector files (JSON arrays) of dir.
func countVectors(dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no vector files in %s (%v)", dir, err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var vs []json.RawMessage
		if err := json.Unmarshal(b, &vs); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		n += len(vs)
	}
	return n, nil
}
