package crdt

import "strconv"

// Subject describes one kind of object operations can address, and which metadata fields
// identify an object of that kind.
type Subject struct {
	// Name is the subject as it appears on the wire ("feature").
	Name string
	// IDFields are the metadata fields, in order, whose string values together identify one
	// object. None means the subject has a single object (the map).
	IDFields []string
	// Parent names the subject whose object must be saved before this one (dirty() lists a
	// datalayer before its features); ParentField is the metadata field holding the parent's id.
	Parent, ParentField string
}

// DefaultSubjects is uMap's subject table: the map and its permissions (one object each),
// datalayers and their permissions (by metadata.id), features (by metadata.layerId and
// metadata.id). Other metadata fields (featureType …) travel along and are not identity.
func DefaultSubjects() []Subject {
	return []Subject{
		{Name: "map"},
		{Name: "mappermissions"},
		{Name: "datalayer", IDFields: []string{"id"}},
		{Name: "datalayerpermissions", IDFields: []string{"id"}},
		{Name: "feature", IDFields: []string{"layerId", "id"}, Parent: "datalayer", ParentField: "layerId"},
	}
}

// MaxIDBytes is the longest identity field (metadata.id, metadata.layerId) accepted.
const MaxIDBytes = 256

// objectKey returns the identity of the object that subject + metadata (canonical JSON)
// address: the subject and its id fields joined by NUL bytes.
func objectKey(sub *Subject, meta string) (string, error) {
	b, err := appendObjectKey(make([]byte, 0, 64), sub, meta)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendObjectKey appends the identity of the object to b (see objectKey).
func appendObjectKey(b []byte, sub *Subject, meta string) ([]byte, error) {
	b = append(b, sub.Name...)
	if len(sub.IDFields) == 0 {
		return b, nil
	}
	// One walk over the metadata picks every identity field.
	var found [4]string
	var vals []string
	if len(sub.IDFields) <= len(found) {
		vals = found[:len(sub.IDFields)]
	} else {
		vals = make([]string, len(sub.IDFields))
	}
	if !flatValues(meta, sub.IDFields, vals) {
		clear(vals)
		memberValues(meta, sub.IDFields, vals)
	}
	return appendKeyOf(b, sub, vals)
}

// appendKeyOf appends the identity fields' values to b (which holds the subject's name),
// vals[i] the raw JSON value of sub.IDFields[i] ("" for none), checking each.
func appendKeyOf(b []byte, sub *Subject, vals []string) ([]byte, error) {
	for i, f := range sub.IDFields {
		raw := vals[i]
		if raw == "" {
			return b, newError(ErrBadMetadata, "subject "+quote(sub.Name)+" needs metadata."+f)
		}
		if len(raw) < 2 || raw[0] != '"' {
			return b, newError(ErrBadMetadata, "metadata."+f+" must be a string, got "+quote(raw))
		}
		id := decodeString(raw[1 : len(raw)-1])
		if len(id) != len(raw)-2 && loneSurrogate(raw[1:len(raw)-1]) { // escapes only make it differ
			return b, newError(ErrBadMetadata, "metadata."+f+" escapes a lone UTF-16 surrogate: "+quote(raw))
		}
		if id == "" || len(id) > MaxIDBytes {
			return b, newError(ErrBadMetadata, "metadata."+f+" must be a non-empty string of at most "+strconv.Itoa(MaxIDBytes)+" bytes, got "+quote(raw))
		}
		b = append(b, 0)
		b = append(b, id...)
	}
	return b, nil
}

// memberValues sets vals[i] to the raw value of meta's member named fields[i] (the last
// of duplicates, as in JSON.parse), leaving it as it is if there is none.
func memberValues(meta string, fields, vals []string) {
	it := members(meta)
	for name, val, ok := it.next(); ok; name, val, ok = it.next() {
		for i, f := range fields {
			if name == f {
				vals[i] = val
			}
		}
	}
}

// flatValues is memberValues for the usual metadata — a flat object of plain strings
// (plainString), without whitespace — read in one pass without the general parser; it
// reports false, having set any of vals, for any other text.
func flatValues(meta string, fields, vals []string) bool {
	if len(meta) < 2 || meta[0] != '{' {
		return false
	}
	if meta[1] == '}' {
		return len(meta) == 2
	}
	for i := 1; ; {
		name, j := plainString(meta, i)
		if j < 0 || j >= len(meta) || meta[j] != ':' {
			return false
		}
		start := j + 1
		if _, j = plainString(meta, start); j < 0 || j >= len(meta) {
			return false
		}
		for k, f := range fields {
			if textEqual(name, f) {
				vals[k] = meta[start:j]
			}
		}
		switch meta[j] {
		case ',':
			i = j + 1
		case '}':
			return j+1 == len(meta)
		default:
			return false
		}
	}
}
