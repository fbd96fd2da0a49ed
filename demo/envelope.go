package main

import (
	"bytes"
	"encoding/json"
)

// The relay passes messages on as their senders wrote them. It writes into a
// routed PeerMessage its sender only, in place: re-encoding the message
// (encoding/json) would reorder its members and escape <, > and & as \u003c,
// \u003e and \u0026 — six bytes for one, and uMap values (URLs, HTML) hold
// many: a sync page well under the engine's limit would arrive over it, and be
// refused every time it was sent.

// member is one member of a JSON object, by its offsets in the object's text.
type member struct {
	name  string // decoded
	start int    // the key's opening quote
	value int    // the value's first byte
	end   int    // the byte after the value
}

// members returns the members of obj, the text of a JSON object (valid JSON:
// the caller has decoded it), in order, duplicates included.
func members(obj []byte) []member {
	var out []member
	i := skipSpace(obj, 0) + 1 // past '{'
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return out
		}
		if obj[i] == ',' {
			i++
			continue
		}
		m := member{start: i}
		keyEnd := skipString(obj, i)
		m.name = decodeName(obj[i:keyEnd])
		i = skipSpace(obj, keyEnd) + 1 // past ':'
		m.value = skipSpace(obj, i)
		m.end = skipValue(obj, m.value)
		out = append(out, m)
		i = m.end
	}
}

// decodeName returns the text of a JSON string (its quotes included).
func decodeName(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	_ = json.Unmarshal(raw, &s) // valid JSON: it decodes
	return s
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b) // not valid JSON: the caller checked it is
		}
		j += k
		escapes := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			escapes++
		}
		j++
		if escapes%2 == 0 {
			return j
		}
	}
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b) // not valid JSON: the caller checked it is
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) { // a number, true, false or null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// withSender returns msg, a JSON object, with sender as the value of every
// member named "sender" (a duplicate could otherwise name another peer to a
// reader that takes the first one, or the last), or with a "sender" member
// added after the last "kind" (at the front without one) if it has none.
// Nothing else changes: members, their order, their values and the
// whitespace between them stay as they were.
func withSender(msg []byte, sender string) []byte {
	value := mustJSON(sender)
	ms := members(msg)
	var senders []member
	insert := skipSpace(msg, 0) + 1 // after '{'
	for _, m := range ms {
		switch m.name {
		case "sender":
			senders = append(senders, m)
		case "kind":
			insert = m.end
		}
	}
	if len(senders) == 0 {
		out := make([]byte, 0, len(msg)+len(`"sender":,`)+len(value))
		out = append(out, msg[:insert]...)
		if insert > skipSpace(msg, 0)+1 { // after a member
			out = append(out, ',')
		}
		out = append(out, `"sender":`...)
		out = append(out, value...)
		if insert == skipSpace(msg, 0)+1 && len(ms) > 0 { // before a member
			out = append(out, ',')
		}
		return append(out, msg[insert:]...)
	}
	size := len(msg)
	for _, m := range senders {
		size += len(value) - (m.end - m.value)
	}
	out := make([]byte, 0, size)
	at := 0
	for _, m := range senders {
		out = append(out, msg[at:m.value]...)
		out = append(out, value...)
		at = m.end
	}
	return append(out, msg[at:]...)
}

// forwardable returns msg, a PeerMessage carrying a ListOperationsResponse
// that a peer sent the relay's replica, as the relay passes it on to the
// other peers of the room: from sender (the replica), to the room (recipient
// "", which every peer takes), and without the response's "vector", "more"
// and session tokens ("for", "session": the relay's and the answerer's). A peer takes the operations and nothing else: with no vector it
// claims nothing it was not sent (the vector was the answerer's, computed for
// the replica), and neither asks for a next page nor pushes anything back.
func forwardable(msg []byte, sender string) []byte {
	out := withSender(msg, sender)
	return rewrite(out, func(m member, value []byte) ([]byte, bool) {
		switch m.name {
		case "recipient":
			return []byte(`""`), true
		case "message":
			if len(value) > 0 && value[0] == '{' {
				return rewrite(value, func(m member, value []byte) ([]byte, bool) {
					return value, m.name != "vector" && m.name != "more" && m.name != "for" && m.name != "session"
				}), true
			}
		}
		return value, true
	})
}

// rewrite returns obj, a JSON object, with each member's value replaced by
// what edit returns for it, and the members for which edit returns false
// left out. Kept members keep their order; the whitespace around the members
// left out goes with them.
func rewrite(obj []byte, edit func(m member, value []byte) ([]byte, bool)) []byte {
	ms := members(obj)
	if len(ms) == 0 {
		return obj
	}
	out := make([]byte, 0, len(obj))
	out = append(out, obj[:ms[0].start]...) // '{' and the whitespace after it
	kept := 0
	for _, m := range ms {
		value, keep := edit(m, obj[m.value:m.end])
		if !keep {
			continue
		}
		if kept > 0 {
			out = append(out, ',')
		}
		kept++
		out = append(out, obj[m.start:m.value]...) // the name, ':' and the whitespace around it
		out = append(out, value...)
	}
	return append(out, obj[ms[len(ms)-1].end:]...) // the whitespace before '}', and '}'
}
