package crdt

import (
	"strconv"
	"strings"
	"unsafe"
)

// A key path names a place inside an object: dotted member names, a literal dot (or one of
// gjson's special characters) escaped with a backslash, as in `properties._umap_options.color`
// or `properties.a\.b`. Every part names an object member — numbers too: `geometry.coordinates.0`
// names the member "0" of an object, never an array element (see doc.go, "Paths").

// parsePath splits an escaped key into its parts.
func parsePath(key string, lim Limits) ([]string, error) {
	if key == "" {
		return nil, newError(ErrBadKey, "empty key")
	}
	if len(key) > lim.MaxKeyBytes {
		return nil, newError(ErrTooLarge, "key of "+strconv.Itoa(len(key))+" bytes, more than "+strconv.Itoa(lim.MaxKeyBytes)+": "+quote(key))
	}
	if !strings.ContainsRune(key, '\\') {
		n := strings.Count(key, ".") + 1
		if n > lim.MaxKeyParts {
			return nil, newError(ErrTooLarge, "key with more than "+strconv.Itoa(lim.MaxKeyParts)+" parts: "+quote(key))
		}
		parts := strings.Split(key, ".")
		for _, p := range parts {
			if p == "" {
				return nil, newError(ErrBadKey, "empty part in key "+quote(key))
			}
		}
		return parts, nil
	}
	var parts []string
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch c {
		case '\\':
			if i+1 == len(key) {
				return nil, newError(ErrBadKey, "key ends with a backslash: "+quote(key))
			}
			i++
			b.WriteByte(key[i])
		case '.':
			if b.Len() == 0 {
				return nil, newError(ErrBadKey, "empty part in key "+quote(key))
			}
			parts = append(parts, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return nil, newError(ErrBadKey, "empty part in key "+quote(key))
	}
	parts = append(parts, b.String())
	if len(parts) > lim.MaxKeyParts {
		return nil, newError(ErrTooLarge, "key with more than "+strconv.Itoa(lim.MaxKeyParts)+" parts: "+quote(key))
	}
	return parts, nil
}

// JoinPath builds an escaped key from parts, escaping `\ . * ? | # @ !` as gjson does.
func JoinPath(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		j := 0
		for j < len(p) && !keyJSONMark[p[j]] {
			j++
		}
		b.WriteString(p[:j]) // the usual part, as it is
		for ; j < len(p); j++ {
			switch c := p[j]; c {
			case '\\', '.', '*', '?', '|', '#', '@', '!':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// hasPrefix reports whether path starts with prefix (or equals it).
func hasPrefix(path, prefix []string) bool {
	if len(prefix) > len(path) {
		return false
	}
	if len(prefix) == 0 || &path[0] == &prefix[0] { // one interned path: the same parts
		return true
	}
	for i, p := range prefix {
		// Parts are interned: equal ones share their bytes, and most compare by address,
		// without the call a string comparison makes once the lengths agree.
		if q := path[i]; len(q) != len(p) || (unsafe.StringData(q) != unsafe.StringData(p) && q != p) {
			return false
		}
	}
	return true
}

func equalPath(a, b []string) bool { return len(a) == len(b) && hasPrefix(a, b) }

// appendKeyJSON appends the escaped key of path (JoinPath) as a JSON string, without
// building the key first.
func appendKeyJSON(b []byte, path []string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i, p := range path {
		if i > 0 {
			b = append(b, '.')
		}
		j := 0
		for j < len(p) && !keyJSONMark[p[j]] {
			j++
		}
		b = append(b, p[:j]...) // the usual part, as it is
		for ; j < len(p); j++ {
			switch c := p[j]; c {
			case '\\':
				b = append(b, `\\\\`...) // the key's escape, then the escaped backslash, as JSON
			case '.', '*', '?', '|', '#', '@', '!':
				b = append(b, '\\', '\\', c)
			case '"':
				b = append(b, '\\', '"')
			default:
				if c < 0x20 {
					b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
				} else {
					b = append(b, c)
				}
			}
		}
	}
	return append(b, '"')
}

// keyJSONMark marks the bytes appendKeyJSON writes otherwise than as they are.
var keyJSONMark = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	for _, c := range []byte("\\.*?|#@!\"") {
		t[c] = true
	}
	return t
}()
