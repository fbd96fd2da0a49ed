package crdt

// Three-way merge of divergent saves of a uMap datalayer (DESIGN §8).
//
// When two people edit the same datalayer without live sync and both save, uMap's server
// sees the second save arrive stale (its If-Unmodified-Since is older than the last save),
// finds the version that client started from (the reference), and rebases the incoming
// changes onto the latest version. uMap's own merge_features does this at whole-feature
// granularity and fails on any overlap; Merge does it key by key and names each conflict.
// The rules are in the doc comment of Merge.

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// MergePolicy says what Merge does when it finds conflicts.
type MergePolicy int

const (
	// MergeFail (the zero value) refuses to merge when there are conflicts: Merge returns
	// the conflicts and an error with code "conflict" (ErrConflict), and no document. This
	// is the 412 Precondition Failed path of a stale save.
	MergeFail MergePolicy = iota
	// MergeLatestWins resolves every conflict with the latest side's value (what is saved
	// already stays; the stale incoming edit of that key is dropped).
	MergeLatestWins
	// MergeIncomingWins resolves every conflict with the incoming side's value (the save
	// being made overwrites the conflicting keys of the latest one, deletions included).
	MergeIncomingWins
)

// Limits of Merge. Larger or deeper input is refused with an error of code "too_large" or
// "too_deep".
const (
	// MergeMaxBytes bounds the three documents together (64 MiB).
	MergeMaxBytes = 64 << 20
	// MergeMaxDepth bounds the JSON nesting of each document (64 levels; a
	// FeatureCollection of MultiPolygons needs 8).
	MergeMaxDepth = 64
)

// Conflict is one place both sides changed differently, or one side edited and the other
// deleted.
type Conflict struct {
	// FeatureID is the id of the feature (a string id as its decoded text, a lone UTF-16
	// surrogate in it as U+FFFD; a number id as JavaScript writes it), or "" for a
	// layer-level conflict. Features matched by content (without an id, or of an id several
	// share) never conflict, so "" always means the layer.
	FeatureID string
	// Key is the escaped key path of the place (see JoinPath): "" for the whole feature (one
	// side deleted it, the other edited it), "geometry", "properties.name",
	// "properties._umap_options.color"; for a layer-level conflict, a path from the top of the
	// document, such as "_umap_options.color".
	Key string
	// Reference, Latest and Incoming are the canonical JSON of the value at Key in each
	// document, "" where it is absent (deleted, or never there).
	Reference, Latest, Incoming string
}

// AppendJSON appends c as a JSON object:
// {"featureId":…,"key":…,"reference":…,"latest":…,"incoming":…}, the three values as JSON
// and each left out where absent.
func (c Conflict) AppendJSON(b []byte) []byte {
	b = append(b, `{"featureId":`...)
	b = appendString(b, c.FeatureID)
	b = append(b, `,"key":`...)
	b = appendString(b, c.Key)
	for _, v := range [...]struct{ name, val string }{
		{`,"reference":`, c.Reference}, {`,"latest":`, c.Latest}, {`,"incoming":`, c.Incoming},
	} {
		if v.val != "" {
			b = append(b, v.name...)
			b = append(b, v.val...)
		}
	}
	return append(b, '}')
}

// AppendConflictsJSON appends conflicts as a JSON array (of Conflict.AppendJSON objects).
func AppendConflictsJSON(b []byte, conflicts []Conflict) []byte {
	b = append(b, '[')
	for i, c := range conflicts {
		if i > 0 {
			b = append(b, ',')
		}
		b = c.AppendJSON(b)
	}
	return append(b, ']')
}

// MergeResult is what Merge returns.
type MergeResult struct {
	// Document is the merged FeatureCollection as canonical JSON (members sorted, features
	// in the merge order). It is nil when Merge returns an error, conflicts under MergeFail
	// included.
	Document []byte
	// Conflicts lists every conflict found, layer-level ones first, then by feature in the
	// merge order, and within a feature in key path order (member names compared level by
	// level: "properties.a.z" comes before "properties.a-", though the joined keys sort the
	// other way). Under MergeLatestWins and MergeIncomingWins they are resolved in Document;
	// under MergeFail nothing is merged.
	Conflicts []Conflict
}

// Merge merges two saves of a uMap datalayer made from a common reference: latest (saved
// first) and incoming (the stale save). Each is a GeoJSON FeatureCollection as uMap stores
// it: a top-level "_umap_options", and features carrying "properties._umap_options".
// Additions from both sides are kept, deletions from both applied, each feature's geometry
// and each property path merged three-way, and the same change on both sides is no
// conflict. Layer-level members (_umap_options and any other top-level member but
// "features") merge the same way.
//
// The rule, for one place (a feature, a member, a key path) holding a value in the
// reference r, in latest l and in incoming i, "absent" counting as a value:
//
//   - l = i: l (both sides made the same change, or neither changed anything);
//   - l = r: i (only incoming changed it);
//   - i = r: l (only latest changed it);
//   - otherwise, if l and i are both objects and r is an object or absent: their members
//     merge one by one by the same rule (so two sides that add the same feature or member
//     with different content merge it member by member);
//   - otherwise, if r, l and i are arrays, r's elements begin both l's and i's (each side
//     only appended), and the place is not a feature's geometry: r's elements, then the
//     elements latest appended, then those incoming appended but for the ones equal to one
//     latest appended (each of latest's stands for one equal of incoming's). So two users
//     adding a property key each, which makes uMap append a field to the layer's
//     "_umap_options.fields", keep both fields, and the same field added by both is kept
//     once;
//   - otherwise it is a conflict: both sides changed the place differently, or one edited
//     what the other deleted. It is reported, and policy picks l or i.
//
// Values are compared as JavaScript reads them, whatever wrote them (uMap's JavaScript, or
// Python's json.dumps after an earlier merge): strings by their decoded text ("Caf\u00e9"
// equals "Café"; an escaped lone UTF-16 surrogate, which JavaScript keeps, is kept as its
// lowercase escape, so "\ud800" equals "\uD800" but not "\udc00" or "\ufffd"), numbers by
// their double value (1.0 equals 1, 1E3 equals 1000; a number too large for a double,
// 1e400, by its text). Document and Conflict values are written in
// that form: canonical JSON (members sorted, no whitespace), strings minimally escaped,
// numbers as JavaScript's JSON.stringify writes them.
//
// Scalars are atomic, and so are arrays but for appends on both sides (any other change of
// an array on both sides, an element removed, changed or moved, is a conflict). A feature's
// geometry is one value ("geometry", never "geometry.coordinates"), appends to its
// coordinates included: two different edits of one shape conflict, since mixing the
// coordinates of two drags makes a shape nobody drew. Properties merge key by key, through
// nested objects ("properties._umap_options.color"). A key one side deleted and the other
// left as it was is deleted: leaving a value unchanged is not setting it. A JSON null is a
// value like any other, not a deletion. A feature's "properties._umap_options" absent
// counts as an empty object, since uMap writes a feature without options without it: one
// side resetting a feature's options and the other setting one merge option by option, and
// a merge that leaves none writes none.
//
// Features are matched by their top-level "id" (where uMap writes it; "properties.id" is an
// ordinary property): a non-empty string or a number, compared as values (so "7" and 7
// are two ids, 7 and 7.0 one). A feature without a usable id (none, "", null, an object …)
// is matched by content, identical canonical JSON; edited on one side it is, to Merge, one
// feature deleted and another added, so it never conflicts and every edit of it is kept. A
// feature whose id changed is likewise one deleted and one added. So are the features of
// an id several features of one of the three documents share: which of them an edited one
// was cannot be told, and matched by place an edit would go to whichever feature came to
// be at that place. Several features of equal content are matched in order, the k-th with
// the k-th.
//
// Feature order: latest's order, then the features of incoming that latest does not hold
// (new ones, or ones latest deleted and incoming edited, kept by MergeIncomingWins), in
// incoming's order. When one side left the document as the reference was (equal canonical
// JSON), or both sides are equal, the result is the other side as it is, order included.
//
// Swapping latest and incoming changes, in a merge without conflicts, the order of the
// features (above) and the order of the elements both sides appended to one array, nothing
// else: merge(r, a, b) holds such an array as r's elements, a's appended ones, then b's
// other appended ones, and merge(r, b, a) as r's, b's appended ones, then a's other ones;
// the same elements either way, each appended one as many times as the side that appended
// it more often did.
//
// Errors, each an *Error with a stable Code:
//   - "conflict" (ErrConflict): policy is MergeFail and there are conflicts; the result
//     holds them (Document nil), and the message names the first (feature id and key);
//   - "invalid_json" (ErrInvalidJSON): a document is not well-formed JSON or not UTF-8;
//   - "bad_value" (ErrBadValue): a document is not a FeatureCollection (not an object, its
//     "type" not "FeatureCollection", "features" missing or not an array, a feature not an
//     object or its "type" not "Feature");
//   - "too_large" (ErrTooLarge), "too_deep" (ErrTooDeep): over MergeMaxBytes or
//     MergeMaxDepth;
//   - "bad_option" (ErrBadOption): policy is not one of the MergePolicy constants.
//
// Messages name the document at fault ("reference", "latest" or "incoming"). Merge never
// panics and never modifies its inputs.
func Merge(reference, latest, incoming []byte, policy MergePolicy) (MergeResult, error) {
	if policy < MergeFail || policy > MergeIncomingWins {
		return MergeResult{}, newError(ErrBadOption, "unknown merge policy "+strconv.Itoa(int(policy)))
	}
	if n := len(reference) + len(latest) + len(incoming); n > MergeMaxBytes {
		return MergeResult{}, newError(ErrTooLarge, "documents of "+strconv.Itoa(n)+" bytes together, more than "+strconv.Itoa(MergeMaxBytes))
	}
	r, err := parseLayer("reference", reference)
	if err != nil {
		return MergeResult{}, err
	}
	l, err := parseLayer("latest", latest)
	if err != nil {
		return MergeResult{}, err
	}
	i, err := parseLayer("incoming", incoming)
	if err != nil {
		return MergeResult{}, err
	}
	// Nothing changed on one side (or both sides made the same save): the other side is
	// the merge, in its own order.
	switch {
	case l.canon == i.canon, i.canon == r.canon:
		return MergeResult{Document: []byte(l.canon)}, nil
	case l.canon == r.canon:
		return MergeResult{Document: []byte(i.canon)}, nil
	}
	return mergeLayers(r, l, i, policy)
}

// mergeLayers merges three parsed documents by the rules, without the shortcuts of Merge.
func mergeLayers(r, l, i *layerDoc, policy MergePolicy) (MergeResult, error) {
	matchByContent(r, l, i)
	m := merger{policy: policy}
	top := m.object(nil, r.top, l.top, i.top)

	feats := []byte{'['}
	n := 0
	add := func(k featureKey, id string) {
		v := m.feature(id, r.lookup(k), l.lookup(k), i.lookup(k))
		if !v.ok {
			return
		}
		if n > 0 {
			feats = append(feats, ',')
		}
		n++
		feats = append(feats, v.raw...)
	}
	for _, f := range l.feats {
		add(f.key, f.id)
	}
	for _, f := range i.feats {
		if _, ok := l.index[f.key]; !ok {
			add(f.key, f.id)
		}
	}
	feats = append(feats, ']')

	res := MergeResult{Conflicts: m.conflicts}
	if len(m.conflicts) > 0 && policy == MergeFail {
		return res, conflictError(m.conflicts)
	}
	// The layer members, with "features" in its sorted place.
	doc := make([]byte, 0, len(top)+len(feats)+16)
	doc = append(doc, '{')
	placed := false
	put := func(name, val string) {
		if len(doc) > 1 {
			doc = append(doc, ',')
		}
		doc = appendString(doc, name)
		doc = append(doc, ':')
		doc = append(doc, val...)
	}
	eachMember(top, func(name, val string) bool {
		if !placed && name > "features" {
			put("features", string(feats))
			placed = true
		}
		put(name, val)
		return true
	})
	if !placed {
		put("features", string(feats))
	}
	res.Document = append(doc, '}')
	return res, nil
}

// conflictError is the error of a merge refused for conflicts; it names the first.
func conflictError(cs []Conflict) *Error {
	c := cs[0]
	var msg string
	switch {
	case c.FeatureID == "":
		msg = "layer option " + quote(c.Key)
	case c.Key != "":
		msg = "feature " + quote(c.FeatureID) + ", key " + quote(c.Key)
	case c.Latest == "":
		msg = "feature " + quote(c.FeatureID) + " deleted in latest, edited in incoming"
	default:
		msg = "feature " + quote(c.FeatureID) + " edited in latest, deleted in incoming"
	}
	if len(cs) == 1 {
		return newError(ErrConflict, "1 conflict: "+msg)
	}
	return newError(ErrConflict, strconv.Itoa(len(cs))+" conflicts, the first: "+msg)
}

// layerDoc is one validated datalayer document.
type layerDoc struct {
	canon string // canonical JSON of the whole document
	top   string // canonical JSON of the document without "features"
	feats []docFeature
	index map[featureKey]int // into feats
}

// docFeature is one feature of a document.
type docFeature struct {
	key featureKey
	id  string // the id as Conflict.FeatureID gives it; "" when matched by content
	raw string // canonical JSON
}

// featureKey is the identity features are matched by: "s" + a string id, "n" + a number
// id, or "c" + the canonical feature; n counts earlier features of the same identity.
type featureKey struct {
	ident string
	n     int
}

// matchByContent gives the features whose id is shared by several features of one
// document (of any of docs) the identity of a feature without an id: their content. Which
// of them an edited one was cannot be told; matched by place, an edit would be merged into
// whichever feature came to be at that place (latest deleting the first of two, incoming's
// edit of it went to the second).
func matchByContent(docs ...*layerDoc) {
	shared := map[string]int{}
	for _, d := range docs {
		for _, f := range d.feats {
			if f.key.n == 1 && f.key.ident[0] != 'c' {
				shared[f.key.ident] = 1
			}
		}
	}
	if len(shared) == 0 {
		return
	}
	for _, d := range docs {
		seen := map[string]int{}
		d.index = map[featureKey]int{}
		for j := range d.feats {
			f := &d.feats[j]
			if shared[f.key.ident] > 0 {
				f.key.ident, f.id = "c"+f.raw, ""
			}
			f.key.n = seen[f.key.ident]
			seen[f.key.ident]++
			d.index[f.key] = j
		}
	}
}

func (d *layerDoc) lookup(k featureKey) slot {
	if j, ok := d.index[k]; ok {
		return slot{raw: d.feats[j].raw, ok: true}
	}
	return slot{}
}

// parseLayer validates data as a datalayer document; which names it in errors.
func parseLayer(which string, data []byte) (*layerDoc, error) {
	canon, err := canonicalJSON(string(data), MergeMaxDepth)
	if err != nil {
		if e, ok := err.(*Error); ok {
			return nil, newError(e.sentinel, which+" document: "+e.msg)
		}
		return nil, newError(ErrInvalidJSON, which+" document: "+err.Error())
	}
	canon = string(appendValueForm(make([]byte, 0, len(canon)), canon))
	if !isObject(canon) {
		return nil, newError(ErrBadValue, which+" document is not a JSON object: "+quote(canon))
	}
	// One pass over the members: the layer-level ones (all but "features") make top.
	var typ, arr string
	var hasType, hasFeatures bool
	top := []byte{'{'}
	eachMember(canon, func(name, val string) bool {
		if name == "features" {
			arr, hasFeatures = val, true
			return true
		}
		if name == "type" {
			typ, hasType = val, true
		}
		if len(top) > 1 {
			top = append(top, ',')
		}
		top = appendString(top, name)
		top = append(top, ':')
		top = append(top, val...)
		return true
	})
	top = append(top, '}')
	if !hasType {
		return nil, newError(ErrBadValue, which+` document has no "type"; expected "FeatureCollection"`)
	}
	if s, ok := jsonStringValue(typ); s != "FeatureCollection" {
		if ok {
			typ = s
		}
		return nil, newError(ErrBadValue, which+" document has type "+quote(typ)+`, expected "FeatureCollection"`)
	}
	if !hasFeatures {
		return nil, newError(ErrBadValue, which+` document has no "features" array`)
	}
	if len(arr) == 0 || arr[0] != '[' {
		return nil, newError(ErrBadValue, which+` document: "features" is not an array: `+quote(arr))
	}
	d := &layerDoc{canon: canon, top: string(top), index: map[featureKey]int{}}
	seen := map[string]int{}
	eachElement(arr, func(raw string) bool {
		if !isObject(raw) {
			err = newError(ErrBadValue, which+" document: features["+strconv.Itoa(len(d.feats))+"] is not an object: "+quote(raw))
			return false
		}
		var typ, id string
		var hasType, hasID bool
		eachMember(raw, func(name, val string) bool {
			switch name {
			case "id":
				id, hasID = val, true
			case "type":
				typ, hasType = val, true
			}
			return true
		})
		if s, ok := jsonStringValue(typ); s != "Feature" {
			at := which + " document: features[" + strconv.Itoa(len(d.feats)) + "]"
			if !hasType {
				err = newError(ErrBadValue, at+` has no "type"; expected "Feature"`)
			} else {
				if ok {
					typ = s
				}
				err = newError(ErrBadValue, at+" has type "+quote(typ)+`, expected "Feature"`)
			}
			return false
		}
		ident, id := featureIdentity(raw, id, hasID)
		k := featureKey{ident: ident, n: seen[ident]}
		seen[ident]++
		d.index[k] = len(d.feats)
		d.feats = append(d.feats, docFeature{key: k, id: id, raw: raw})
		return true
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// featureIdentity returns the identity of a canonical feature, whose "id" member (if
// hasID) is v, and the id Conflict.FeatureID gives it.
func featureIdentity(raw, v string, hasID bool) (ident, id string) {
	if hasID && v != "" {
		if s, isStr := jsonStringValue(v); isStr && s != "" {
			// By its text in value form, one per string JavaScript tells apart: decoded,
			// two lone surrogates would both be U+FFFD.
			return "s" + v, s
		}
		if c := v[0]; c == '-' || c >= '0' && c <= '9' {
			return "n" + v, v
		}
	}
	return "c" + raw, ""
}

// jsonStringValue decodes raw as a JSON string; ok is false if raw is not one.
// (A private helper that belongs with the reader of json.go.)
func jsonStringValue(raw string) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	p := jparser{s: raw, maxDepth: 1}
	s = p.str()
	return s, p.err == nil && p.i == len(raw)
}

// slot is a value at one place of one document; ok false means absent.
type slot struct {
	raw string // canonical JSON
	ok  bool
}

// merger applies the three-way rules and collects conflicts.
type merger struct {
	policy    MergePolicy
	conflicts []Conflict
	featureID string // the feature being merged; "" at layer level
	inFeature bool
}

// feature merges one feature, found absent or present in each document.
func (m *merger) feature(id string, r, l, i slot) slot {
	m.featureID, m.inFeature = id, true
	defer func() { m.featureID, m.inFeature = "", false }()
	return m.value(nil, r, l, i)
}

// value merges the values at path.
func (m *merger) value(path []string, r, l, i slot) slot {
	switch {
	case l == i:
		return l
	case l == r:
		return i
	case i == r:
		return l
	}
	if m.inFeature && len(path) == 2 && path[0] == "properties" && path[1] == "_umap_options" &&
		objectOrAbsent(r) && objectOrAbsent(l) && objectOrAbsent(i) {
		// uMap writes a feature's empty _umap_options as none: absent is {}, and a merge
		// that leaves no option writes none.
		v := slot{raw: m.object(path, r.raw, l.raw, i.raw), ok: true}
		if v.raw == "{}" {
			return slot{}
		}
		return v
	}
	atomic := m.inFeature && len(path) == 1 && path[0] == "geometry"
	if !atomic && r.ok && l.ok && i.ok {
		if v, ok := appendedUnion(r.raw, l.raw, i.raw); ok {
			return slot{raw: v, ok: true}
		}
	}
	if !atomic && l.ok && i.ok && isObject(l.raw) && isObject(i.raw) && (!r.ok || isObject(r.raw)) {
		return slot{raw: m.object(path, r.raw, l.raw, i.raw), ok: true}
	}
	m.conflicts = append(m.conflicts, Conflict{
		FeatureID: m.featureID,
		Key:       JoinPath(path...),
		Reference: r.raw,
		Latest:    l.raw,
		Incoming:  i.raw,
	})
	if m.policy == MergeIncomingWins {
		return i
	}
	return l
}

// appendedUnion merges three arrays of which r begins both l and i (each side only
// appended): r's elements, l's appended ones, then i's appended ones but for those equal to
// one of l's (each of l's stands for one of i's). ok is false if they are not such arrays.
func appendedUnion(r, l, i string) (string, bool) {
	if r[0] != '[' || l[0] != '[' || i[0] != '[' {
		return "", false
	}
	re, le, ie := elements(r), elements(l), elements(i)
	n := len(re)
	if len(le) <= n || len(ie) <= n || !slices.Equal(re, le[:n]) || !slices.Equal(re, ie[:n]) {
		return "", false
	}
	left := map[string]int{} // latest's appended elements not yet matched to incoming's
	for _, e := range le[n:] {
		left[e]++
	}
	out := []byte(l[:len(l)-1])
	for _, e := range ie[n:] {
		if left[e] > 0 {
			left[e]--
		} else {
			out = append(append(out, ','), e...)
		}
	}
	return string(append(out, ']')), true
}

// objectOrAbsent says whether s is absent or an object.
func objectOrAbsent(s slot) bool { return !s.ok || isObject(s.raw) }

// object merges three objects (r may be "": absent) member by member, and returns the
// canonical result.
func (m *merger) object(path []string, r, l, i string) string {
	rm, lm, im := membersOf(r), membersOf(l), membersOf(i)
	names := make([]string, 0, len(lm)+len(im))
	for _, mm := range [...]map[string]string{rm, lm, im} {
		for n := range mm {
			names = append(names, n)
		}
	}
	sortStable(names, strings.Compare)
	names = slices.Compact(names)
	out := []byte{'{'}
	first := true
	for _, n := range names {
		rv, rok := rm[n]
		lv, lok := lm[n]
		iv, iok := im[n]
		v := m.value(append(path[:len(path):len(path)], n), slot{rv, rok}, slot{lv, lok}, slot{iv, iok})
		if !v.ok {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendString(out, n)
		out = append(out, ':')
		out = append(out, v.raw...)
	}
	return string(append(out, '}'))
}

// membersOf maps the member names of a canonical object to their values (nil if raw is not
// an object).
func membersOf(raw string) map[string]string {
	if !isObject(raw) {
		return nil
	}
	mm := map[string]string{}
	eachMember(raw, func(name, val string) bool {
		mm[name] = val
		return true
	})
	return mm
}

// appendValueForm appends the canonical JSON raw (valid, canonical) in the form values are
// compared in: strings (member names too) re-escaped minimally from their decoded text,
// numbers written as JavaScript writes their double value. Member order does not change:
// canonical order is by decoded name already. One pass over the text, which holds no
// whitespace. (A private helper that belongs with the writer of json.go.)
func appendValueForm(b []byte, raw string) []byte {
	for j := 0; j < len(raw); {
		switch c := raw[j]; {
		case c == '"':
			p := jparser{s: raw, i: j, maxDepth: 1}
			s := p.str()
			if p.err != nil { // not valid after all: keep the rest as it is
				return append(b, raw[j:]...)
			}
			switch body := raw[j+1 : p.i-1]; {
			case strings.IndexByte(body, '\\') < 0:
				b = append(b, raw[j:p.i]...) // no escapes: minimal already
			case loneSurrogate(body):
				b = appendSurrogateString(b, body)
			default:
				b = appendString(b, s)
			}
			j = p.i
		case c == '-' || c >= '0' && c <= '9':
			k := j + 1
			for k < len(raw) && strings.IndexByte("0123456789.eE+-", raw[k]) >= 0 {
				k++
			}
			b = appendJSNumber(b, raw[j:k])
			j = k
		default:
			b = append(b, c)
			j++
		}
	}
	return b
}

// appendSurrogateString appends the body of a valid JSON string that escapes a lone UTF-16
// surrogate (see loneSurrogate) in the form values are compared in: minimally escaped like
// appendString, each lone surrogate kept as a lowercase \u escape. decodeString would make
// it U+FFFD, so that "\ud800" and "\udc00" (two strings to JavaScript) compared equal and
// an edit from one to the other was lost, and the value itself was written back changed.
func appendSurrogateString(b []byte, body string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0 // the part of body not written yet
	for j := 0; j < len(body); j++ {
		if body[j] != '\\' {
			continue
		}
		if body[j+1] != 'u' {
			j++
			continue
		}
		r := hexVal(body[j+2 : j+6])
		end := j + 6
		lone := r >= 0xDC00 && r < 0xE000
		if r >= 0xD800 && r < 0xDC00 {
			lone = true
			if end+6 <= len(body) && body[end] == '\\' && body[end+1] == 'u' {
				if r2 := hexVal(body[end+2 : end+6]); r2 >= 0xDC00 && r2 < 0xE000 {
					lone, end = false, end+6
				}
			}
		}
		if lone {
			s := appendString(nil, decodeString(body[start:j]))
			b = append(b, s[1:len(s)-1]...)
			b = append(b, '\\', 'u', hex[r>>12], hex[r>>8&15], hex[r>>4&15], hex[r&15])
			start = end
		}
		j = end - 1
	}
	s := appendString(nil, decodeString(body[start:]))
	b = append(b, s[1:]...)
	return b
}

// appendJSNumber appends the JSON number text raw as JavaScript's JSON.stringify writes the
// double it parses to (shortest round-trip digits; fixed notation from 1e-6 to 1e21, else
// "1.5e-7", "1e+21"; -0 as 0). A number out of the double range is appended as written.
func appendJSNumber(b []byte, raw string) []byte {
	if len(raw) <= 15 && raw[0] >= '1' && raw[0] <= '9' && strings.Trim(raw, "0123456789") == "" {
		return append(b, raw...) // an integer held exactly: written as it is
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return append(b, raw...)
	}
	if f == 0 {
		return append(b, '0')
	}
	if a := math.Abs(f); a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	// Go pads the exponent to two digits ("1e-07"); JavaScript does not.
	for j := start; j < len(b); j++ {
		if b[j] == 'e' {
			k := j + 2 // past the sign
			for k < len(b)-1 && b[k] == '0' {
				b = append(b[:k], b[k+1:]...)
			}
			break
		}
	}
	return b
}
