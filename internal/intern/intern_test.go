package intern

import (
	"fmt"
	"sync"
	"testing"
)

func TestTable(t *testing.T) {
	tb := Table[uint16]{Max: 3}
	for _, tc := range []struct {
		key  string
		want uint16
	}{
		{"", 0}, {"a", 1}, {"b", 2}, {"a", 1}, {"c", 3}, {"d", 0}, {"b", 2},
	} {
		if got := tb.ID([]byte(tc.key)); got != tc.want {
			t.Errorf("ID(%q) = %d, want %d", tc.key, got, tc.want)
		}
		if got := tb.IDString(tc.key); got != tc.want {
			t.Errorf("IDString(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	names := tb.Names()
	if fmt.Sprint(names) != "[a b c]" {
		t.Fatalf("Names() = %q, want [a b c]", names)
	}
	if Name(names, uint16(2)) != "b" || Name(names, uint16(0)) != "" || Name(names, uint16(9)) != "" {
		t.Fatalf("Name: %q %q %q", Name(names, uint16(2)), Name(names, uint16(0)), Name(names, uint16(9)))
	}
	var zero Table[uint32]
	if id := zero.IDString("x"); id != 0 {
		t.Fatalf("a Table without Max handed out id %d", id)
	}
}

func TestKnownKeyDoesNotAllocate(t *testing.T) {
	tb := Table[uint32]{Max: 10}
	key := []byte("10.0.0.1")
	tb.ID(key)
	if n := testing.AllocsPerRun(1000, func() { tb.ID(key) }); n != 0 {
		t.Fatalf("looking up a known key allocates %v times", n)
	}
}

// TestConcurrentIDs: many goroutines interning overlapping keys agree on every id, and a snapshot
// taken at any time names each id it covers consistently (run under -race).
func TestConcurrentIDs(t *testing.T) {
	tb := Table[uint32]{Max: 1 << 20}
	const workers, keys = 8, 500
	got := make([][]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				k := (i*7 + w) % keys
				id := tb.IDString(fmt.Sprint("k", k))
				if Name(tb.Names(), id) != fmt.Sprint("k", k) {
					t.Errorf("id %d of k%d names %q", id, k, Name(tb.Names(), id))
				}
				got[w] = append(got[w], id)
			}
		}()
	}
	wg.Wait()
	if n := len(tb.Names()); n != keys {
		t.Fatalf("%d names, want %d", n, keys)
	}
}
