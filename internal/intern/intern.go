// Package intern maps the strings a request log repeats (client keys, route names, path templates)
// to small integer ids, so that a record keeps an id instead of a string and a known string costs a
// map lookup without allocating.
package intern

import (
	"sync"
	"sync/atomic"
)

// Table interns strings: id 0 means none (an empty key, or a table already holding Max strings),
// id i names Names()[i-1]. Ids are never reused, so an id kept in a record names the same string
// whatever is added after it. Lookups of a known key take the read lock and allocate nothing; a new
// key is copied once under the write lock. The zero Table holds no strings at all: set Max.
type Table[ID ~uint16 | ~uint32] struct {
	Max   int // the most strings the table holds; later ones get id 0
	mu    sync.RWMutex
	ids   map[string]ID
	names atomic.Pointer[[]string] // append-only: a snapshot's entries never change
}

// ID returns the id of key, adding it if new.
func (t *Table[ID]) ID(key []byte) ID {
	if len(key) == 0 {
		return 0
	}
	t.mu.RLock()
	id, ok := t.ids[string(key)]
	t.mu.RUnlock()
	if ok {
		return id
	}
	return t.add(string(key))
}

// IDString is ID for a key held as a string.
func (t *Table[ID]) IDString(key string) ID {
	if key == "" {
		return 0
	}
	t.mu.RLock()
	id, ok := t.ids[key]
	t.mu.RUnlock()
	if ok {
		return id
	}
	return t.add(key)
}

func (t *Table[ID]) add(key string) ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[key]; ok {
		return id
	}
	names := t.Names()
	if len(names) >= t.Max {
		return 0
	}
	if t.ids == nil {
		t.ids = map[string]ID{}
	}
	names = append(names, key)
	id := ID(len(names))
	t.names.Store(&names) // before the id is handed out: a record never holds an id past a snapshot
	t.ids[key] = id
	return id
}

// Names returns every string interned so far, by id-1. Later additions are not in it, and its
// entries never change.
func (t *Table[ID]) Names() []string {
	if cur := t.names.Load(); cur != nil {
		return (*cur)[:len(*cur):len(*cur)]
	}
	return nil
}

// Name returns the string of id in a snapshot from Names ("" for 0 or an id past it).
func Name[ID ~uint16 | ~uint32](names []string, id ID) string {
	if id == 0 || int(id) > len(names) {
		return ""
	}
	return names[id-1]
}
