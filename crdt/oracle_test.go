package crdt

// The test oracle of DESIGN §4: a naive replay of every operation, in clock order, over
// plain Go maps decoded with encoding/json — independent of the engine's JSON code and of
// its incremental state.

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

type oracleWrite struct {
	ts    hlc.Timestamp
	idx   int
	verb  string
	obj   string // identity key
	sub   string
	ids   map[string]string
	path  []string
	value any
	has   bool
}

type oracleObj struct {
	sub   string
	ids   map[string]string
	alive bool
	value map[string]any
}

// oracle holds every operation message it was given (deduplicated by clock).
type oracle struct {
	t      testing.TB
	seen   map[hlc.Timestamp]bool
	writes []oracleWrite
	bases  map[string]oracleWrite
}

func newOracle(t testing.TB) *oracle {
	return &oracle{t: t, seen: map[hlc.Timestamp]bool{}, bases: map[string]oracleWrite{}}
}

func decodeNumber(t testing.TB, s string) any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("oracle: bad JSON %q: %v", s, err)
	}
	return v
}

func oracleIdentity(sub string, meta map[string]any) (string, map[string]string) {
	ids := map[string]string{}
	key := sub
	for _, s := range DefaultSubjects() {
		if s.Name == sub {
			for _, f := range s.IDFields {
				id, _ := meta[f].(string)
				ids[f] = id
				key += "\x00" + id
			}
		}
	}
	return key, ids
}

// seed records a base value (zero clock).
func (o *oracle) seed(sub, meta, value string) {
	m, _ := decodeNumber(o.t, meta).(map[string]any)
	key, ids := oracleIdentity(sub, m)
	o.bases[key] = oracleWrite{verb: "upsert", obj: key, sub: sub, ids: ids, value: decodeNumber(o.t, value), has: true}
}

// add records one OperationMessage (or bare operation).
func (o *oracle) add(msg []byte) {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(msg))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		o.t.Fatalf("oracle: %v", err)
	}
	ts := hlc.MustParse(m["hlc"].(string))
	if o.seen[ts] {
		return
	}
	o.seen[ts] = true
	subs := []any{m}
	if m["verb"] == "batch" {
		subs = m["operations"].([]any)
	}
	for i, s := range subs {
		sm := s.(map[string]any)
		meta, _ := sm["metadata"].(map[string]any)
		key, ids := oracleIdentity(sm["subject"].(string), meta)
		w := oracleWrite{ts: ts, idx: i, verb: sm["verb"].(string), obj: key, sub: sm["subject"].(string), ids: ids}
		if k, ok := sm["key"].(string); ok && w.verb == "update" {
			w.path, _ = parsePath(k, DefaultLimits())
		}
		w.value, w.has = sm["value"]
		o.writes = append(o.writes, w)
	}
}

// state replays everything and returns the dump in the engine's State format, normalized.
func (o *oracle) state() string {
	ws := append([]oracleWrite(nil), o.writes...)
	sort.SliceStable(ws, func(i, j int) bool {
		if c := ws[i].ts.Compare(ws[j].ts); c != 0 {
			return c < 0
		}
		return ws[i].idx < ws[j].idx
	})
	objs := map[string]*oracleObj{}
	for k, b := range o.bases {
		objs[k] = &oracleObj{sub: b.sub, ids: b.ids, alive: true, value: deepCopy(b.value).(map[string]any)}
	}
	for _, w := range ws {
		obj := objs[w.obj]
		if obj == nil {
			obj = &oracleObj{sub: w.sub, ids: w.ids, alive: true, value: map[string]any{}}
			objs[w.obj] = obj
		}
		switch w.verb {
		case "upsert":
			obj.alive, obj.value = true, deepCopy(w.value).(map[string]any)
		case "delete":
			obj.alive = false
		case "update":
			if !obj.alive {
				continue
			}
			if w.has {
				setPath(obj.value, w.path, deepCopy(w.value))
			} else {
				unsetPath(obj.value, w.path)
			}
		}
	}
	var keys []string
	for k, obj := range objs {
		if obj.alive && len(obj.value) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []any
	for _, k := range keys {
		obj := objs[k]
		meta := map[string]any{}
		for f, id := range obj.ids {
			meta[f] = id
		}
		out = append(out, map[string]any{"subject": obj.sub, "metadata": meta, "value": obj.value})
	}
	if out == nil {
		out = []any{}
	}
	return normJSON(out)
}

func setPath(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// unsetPath makes the objects on the way, like setPath, then deletes the last part.
func unsetPath(m map[string]any, path []string) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

// normJSON encodes v with sorted keys, numbers as written, no HTML escaping.
func normJSON(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSpace(b.String())
}

// norm re-encodes JSON text through the oracle's encoder, so engine output and oracle
// output compare as text.
func norm(t testing.TB, s string) string { return normJSON(decodeNumber(t, s)) }

// view is what a renderer holds if it applies nothing but the changes the engine returns.
type view struct {
	t    testing.TB
	objs map[string]map[string]any
	subs map[string]string
	ids  map[string]map[string]string
}

func newView(t testing.TB) *view {
	return &view{t: t, objs: map[string]map[string]any{}, subs: map[string]string{}, ids: map[string]map[string]string{}}
}

func (v *view) apply(changes []Change) {
	for _, c := range changes {
		meta, _ := decodeNumber(v.t, c.Metadata).(map[string]any)
		key, ids := oracleIdentity(c.Subject, meta)
		v.subs[key], v.ids[key] = c.Subject, ids
		switch c.Kind {
		case Created:
			v.objs[key] = decodeNumber(v.t, c.Value).(map[string]any)
		case Deleted:
			delete(v.objs, key)
		case Set, Unset:
			if c.Key == "" {
				v.objs[key] = decodeNumber(v.t, c.Value).(map[string]any)
				continue
			}
			obj := v.objs[key]
			if obj == nil {
				obj = map[string]any{}
				v.objs[key] = obj
			}
			path, err := parsePath(c.Key, DefaultLimits())
			if err != nil {
				v.t.Fatal(err)
			}
			if c.Kind == Set {
				setPath(obj, path, decodeNumber(v.t, c.Value))
				continue
			}
			for _, p := range path[:len(path)-1] {
				next, ok := obj[p].(map[string]any)
				if !ok {
					v.t.Fatalf("unset %q below a member that is not an object", c.Key)
				}
				obj = next
			}
			delete(obj, path[len(path)-1])
		}
	}
}

// state returns the view in the engine's State format, normalized.
func (v *view) state() string {
	var keys []string
	for k, o := range v.objs {
		if len(o) == 0 {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []any{}
	for _, k := range keys {
		meta := map[string]any{}
		for f, id := range v.ids[k] {
			meta[f] = id
		}
		out = append(out, map[string]any{"subject": v.subs[k], "metadata": meta, "value": v.objs[k]})
	}
	return normJSON(out)
}
