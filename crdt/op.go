package crdt

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Verb is what an operation does to its object.
type Verb uint8

// The four verbs of uMap's operations.
const (
	// VerbUpdate sets (or, without a value, unsets) one key path of the object.
	VerbUpdate Verb = iota + 1
	// VerbUpsert replaces the whole object with its value and makes it alive.
	VerbUpsert
	// VerbDelete makes the object absent.
	VerbDelete
	// VerbBatch applies its sub-operations atomically under the batch's clock.
	VerbBatch
)

var verbNames = [...]string{VerbUpdate: "update", VerbUpsert: "upsert", VerbDelete: "delete", VerbBatch: "batch"}

// String returns the wire name of the verb.
func (v Verb) String() string {
	if int(v) < len(verbNames) && v > 0 {
		return verbNames[v]
	}
	return "verb(" + strconv.Itoa(int(v)) + ")"
}

func parseVerb(s string) (Verb, bool) {
	// Constant cases: compared in place, where a loop over verbNames compared each name of
	// the same length with a runtime call (byte by byte in wasm).
	switch s {
	case "update":
		return VerbUpdate, true
	case "upsert":
		return VerbUpsert, true
	case "delete":
		return VerbDelete, true
	case "batch":
		return VerbBatch, true
	}
	return 0, false
}

// Limits bound what the engine accepts from the network. The defaults take a real import (a
// datalayer of thousands of features in one upsert or batch).
type Limits struct {
	// MaxMessageBytes bounds one message, incoming or made by a local edit (a batch's
	// included), and a snapshot's size at 4 × MaxMessageBytes. Default 32 MiB. A PeerMessage
	// received may hold 4 KiB more: a sync response around an operation of the limit. A
	// peer's operation is held to it too, whatever message brought it: its text without a
	// sender (an OperationMessage less kind and sender) over it is refused (too_large), so
	// that whatever a replica holds it can page to a peer of the same limits.
	MaxMessageBytes int
	// MaxDepth bounds JSON nesting. Default 64.
	MaxDepth int
	// MaxBatch bounds the sub-operations of a batch, received or local, and the operations
	// of a sync response (a snapshot's log is bounded by its size only). Default 100,000.
	MaxBatch int
	// MaxKeyBytes bounds a key path's length. Default 1,024.
	MaxKeyBytes int
	// MaxKeyParts bounds a key path's parts. Default 32.
	MaxKeyParts int
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{MaxMessageBytes: 32 << 20, MaxDepth: 64, MaxBatch: 100_000, MaxKeyBytes: 1024, MaxKeyParts: 32}
}

// maxSnapshot is the largest snapshot a restore takes: 4 × MaxMessageBytes.
func (l Limits) maxSnapshot() int { return 4 * l.MaxMessageBytes }

// wrapDepth is the nesting a message adds around the values it carries (the operation,
// a batch, a sync response, a snapshot): message parsing allows it on top of MaxDepth.
const wrapDepth = 8

func (l Limits) wireDepth() int { return l.MaxDepth + wrapDepth }

// checkDepth applies MaxDepth to what a write makes of its object: a value written at a
// path of n parts sits n levels down, so update values get MaxDepth-n levels. Every object
// then fits in MaxDepth, and so does anything an undo or a snapshot sends of it.
func (l *Limits) checkDepth(value string, path []string) error {
	if value == "" || (value[0] != '{' && value[0] != '[') {
		return nil
	}
	max := l.MaxDepth - len(path)
	if len(value) <= 2*max {
		return nil // each level takes two brackets: no deeper than half its length
	}
	if deepest := nesting(value); deepest > max {
		return newError(ErrTooDeep, "value nested "+strconv.Itoa(deepest)+" levels at a key of "+strconv.Itoa(len(path))+
			" parts: an object may be at most "+strconv.Itoa(l.MaxDepth)+" levels deep")
	}
	return nil
}

// checkMemberDepth applies MaxDepth to an operation's member other than its value (its
// metadata, a batch's, an unknown field), name: a message nested up to MaxDepth +
// wrapDepth held it, but a sync response or a snapshot wraps an operation deeper than an
// OperationMessage does, and every peer refused the responses and snapshots holding it.
func (l *Limits) checkMemberDepth(name, value string) error {
	if value == "" || (value[0] != '{' && value[0] != '[') || len(value) <= 2*l.MaxDepth {
		return nil
	}
	if deepest := nesting(value); deepest > l.MaxDepth {
		return newError(ErrTooDeep, quote(name)+" nested "+strconv.Itoa(deepest)+" levels: at most "+strconv.Itoa(l.MaxDepth))
	}
	return nil
}

// nesting returns how deep value, valid JSON, nests.
func nesting(value string) int {
	depth, deepest := 0, 0
	for i := 0; i < len(value); i++ {
		switch value[i] {
		case '"':
			for i++; i < len(value) && value[i] != '"'; i++ {
				if value[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > deepest {
				deepest = depth
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}

func (l Limits) verify() error {
	if l.MaxMessageBytes <= 0 || l.MaxDepth <= 2 || l.MaxBatch <= 0 || l.MaxKeyBytes <= 0 || l.MaxKeyParts <= 0 {
		return newError(ErrBadOption, "every limit must be positive (MaxDepth above 2)")
	}
	return nil
}

// op is one operation as the engine stores it. A batch holds its sub-operations in subs;
// they carry no clock of their own. The object's metadata is kept on the object, so an
// operation costs little more than its key and value.
//
// The fields a write arriving on the same place reads of the one it supersedes (clock,
// value, live count, verb) come first, in 53 bytes: one or two cache lines of a large
// replica's cold memory, where the order of declaration spread them over two or three.
type op struct {
	ts    hlc.Timestamp // zero for a sub-operation and for a seeded base value
	value string        // canonical JSON; "" = no value (unset)
	live  int32         // writes of this op still visible in the state
	verb  Verb
	blk   bool     // taken from the replica's blocks (bulk): Compact moves it out (see moveOut)
	path  []string // parsed key (update), parts interned
	seq   uint64   // the origin's counter; 0 when unknown (uMap's plain Journal) or not yet sent
	obj   *object  // nil for a batch
	x     *opExtra // what few operations carry; nil for most
}

// opExtra holds the rarely used parts of an operation, out of line: the engine keeps one op
// per live path, and these three strings would cost 48 bytes on each.
type opExtra struct {
	key   string // the key as received, when JoinPath(path) would escape it differently
	extra string // unknown fields, canonical `"name":value,…`, kept and passed on
	meta  string // its own metadata when it differs from the object's
	subs  []*op  // a batch's sub-operations
	// restores, on a write an undo or redo made, is the newest clock of another peer's work
	// in the value it restored (undoEntry.others): that work is in the place again, and an
	// older local step undone later must leave it (othersWroteSince). Local only: never sent.
	restores hlc.Timestamp
}

// subOps returns a batch's sub-operations.
func (o *op) subOps() []*op {
	if o.x == nil {
		return nil
	}
	return o.x.subs
}

// addSub appends a sub-operation to a batch.
func (o *op) addSub(s *op) { o.more().subs = append(o.more().subs, s) }

func (o *op) more() *opExtra {
	if o.x == nil {
		o.x = &opExtra{}
	}
	return o.x
}

// key returns the escaped key path of an update.
func (o *op) key() string {
	if o.x != nil && o.x.key != "" {
		return o.x.key
	}
	return JoinPath(o.path...)
}

// setKey records key as the key text to send, if JoinPath would not give it back.
func (o *op) setKey(key string) {
	for i := 0; i < len(key); i++ {
		if keyMark[key[i]] {
			o.more().key = strings.Clone(key)
			return
		}
	}
}

// keyMark marks the bytes of a key text that JoinPath may not give back as they are.
var keyMark = func() (t [256]bool) {
	for _, c := range []byte("\\*?|#@!") {
		t[c] = true
	}
	return t
}()

func (o *op) extra() string {
	if o.x == nil {
		return ""
	}
	return o.x.extra
}

func (o *op) setExtra(extra string) {
	if extra != "" {
		o.more().extra = extra
	}
}

// meta returns the operation's own metadata, "" when it is the object's.
func (o *op) meta() string {
	if o.x == nil {
		return ""
	}
	return o.x.meta
}

func (o *op) setMeta(meta string) {
	if meta != "" {
		o.more().meta = meta
	}
}

// writes calls fn for each (sub-)operation that writes, with its index (0 for the op
// itself, i for subs[i-1]).
func (o *op) writes(fn func(w *op, sub int32)) {
	if o.verb != VerbBatch {
		fn(o, 0)
		return
	}
	for i, s := range o.subOps() {
		fn(s, int32(i+1))
	}
}

// decoder turns wire JSON into ops for one replica (its subject table and limits).
type decoder struct {
	blk      *bulk // where build takes its operations and values from (nil: one allocation each)
	subjects map[string]*Subject
	lastSub  *Subject // the subject last named: most messages name the one before's
	lim      Limits
	objects  func(sub *Subject, key []byte, meta string, paths bool) *object
	keyBuf   []byte
	peers    map[string]string   // interned peer ids: a clock must not hold its message alive
	lastPeer string              // the peer id interned last (an entry of peers)
	parts    map[string]string   // interned key parts (see path)
	paths    map[string][]string // interned paths, by parts joined with NUL (see path)
	byKey    map[string]keySlot  // interned paths by key text (see parseKey)
	keySlots [16]keySlot         // the keys met last, by keySlotOf: compared, not hashed
	keyText  table64[keyText]    // key text of each committed interned path, by its first element's address (see pathKey)
	keyBytes int                 // bytes of the key texts in paths and byKey (bounded by maxKeyBytes)
	fresh    interned            // what was interned since the last keepInterned or dropInterned
	// made says the current call made something the replica keeps or drops at its end
	// (commitPending, dropPending): an entry of fresh, or an object (Replica.objectFor).
	// The usual call makes nothing.
	made bool

	// byMeta finds a known object by the canonical metadata text it was first seen with
	// (object.meta, which never changes): the usual message names a feature exactly so.
	// It is keyed by textHash of the text, and a hit is checked by comparing the object's
	// text (see known): Go's wasm runtime hashes and compares a string key byte by byte, a
	// ~100-byte metadata text twice per lookup. A committed object is added when named by
	// that text again (objectFor), unless another one holds its hash, and never leaves the
	// replica.
	byMeta table64[metaSlot]

	// Member buffers reused from message to message: top for a message's envelope, elem for
	// one element of a list of operations. What they hold is valid until the next parse;
	// nothing kept points into them (decodeOp copies what it keeps).
	top, elem, sub []member
	// arena holds the canonical text of a message's values that were not canonical (uMap's
	// metadata is not: its members are not sorted), reused likewise.
	arena []byte
	// canon is the scratch of canonicalWith for metadata given by a caller or inside a
	// compact list (identify), apart from the message's arena, whose texts are in use then.
	canon jscratch
	// value is the scratch of canonicalValue: a value given by a caller, copied out at once.
	value jscratch
	// ends notes where the big values of the message being received end (endMemo).
	ends endMemo
	// metaMembers are the members of the flat metadata of the message being decoded, as
	// flatObjectMembers read them from metaSrc, whose canonical text is metaCanon: build
	// takes a new object's identity from them (identityKey). Set by fastOp's decoding of
	// a message, cleared when it returns.
	metaMembers        flatMembers
	metaSrc, metaCanon string
}

// forget drops what the member buffers still name of the text parsed last: their members
// past their length point into it, and after a large message (a catch-up) or a snapshot
// they would keep the whole text — in the wasm module, the bridge's input buffer —
// allocated as long as the replica.
func (d *decoder) forget() {
	for _, b := range [...][]member{d.top, d.elem, d.sub, d.canon.stack, d.value.stack} {
		clear(b[:cap(b)])
	}
}

// identityKey writes the identity of the object that sub + meta (canonical) address into
// keyBuf: from the members the fast decoder read when meta is the text it made of them,
// else by reading meta (appendObjectKey).
func (d *decoder) identityKey(sub *Subject, meta string) ([]byte, error) {
	ms := &d.metaMembers
	var ids [4]string
	if ms.n == 0 || len(d.metaCanon) != len(meta) || unsafe.StringData(d.metaCanon) != unsafe.StringData(meta) || len(sub.IDFields) > len(ids) {
		return appendObjectKey(d.keyBuf[:0], sub, meta)
	}
	for k, f := range sub.IDFields {
		ids[k] = ms.value(d.metaSrc, f)
	}
	return appendKeyOf(append(d.keyBuf[:0], sub.Name...), sub, ids[:len(sub.IDFields)])
}

// known returns the committed object first seen with the metadata text meta, nil if none
// is remembered by it (see byMeta).
func (d *decoder) known(meta string) *object {
	if len(meta) > maxMetaKeyLen {
		return nil
	}
	// The slot's key holds the text's length: equal keys, equal lengths.
	if s := d.byMeta.get(metaKey(meta)); s != nil && textEqual(unsafe.String(s.text, len(meta)), meta) {
		return s.obj
	}
	return nil
}

// metaSlot is a byMeta entry: the object and the bytes of its text, at hand without reading
// the object. On a large replica the table, the object and the text are each a cache miss;
// with the text's address here the object's and the text's are taken together, not one
// after the other (receive −9% on 100,000 live paths).
type metaSlot struct {
	obj  *object
	text *byte // unsafe.StringData(obj.meta)
}

// remember adds o to byMeta, under its own metadata text, unless its hash is taken (by o,
// or by another object whose text has the same hash: that one stays).
func (d *decoder) remember(o *object) {
	if len(o.meta) <= maxMetaKeyLen {
		d.byMeta.add(metaKey(o.meta), metaSlot{o, unsafe.StringData(o.meta)})
	}
}

// maxMetaKeyLen is the longest metadata text byMeta remembers: its length is part of the key.
const maxMetaKeyLen = 0xffff

// metaKey is byMeta's key of a metadata text (of at most maxMetaKeyLen bytes, never
// empty): its textHash with its length in the low 16 bits, never 0.
func metaKey(meta string) uint64 { return textHash(meta)&^maxMetaKeyLen | uint64(len(meta)) }

// textHash hashes s eight bytes at a time (a multiply and a rotation a word, where Go's
// wasm runtime hashes a string key byte by byte). Its collisions cost a lookup, not
// correctness: known compares the text. It starts from hashSeed.
func textHash(s string) uint64 {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	h := (uint64(len(s)) ^ hashSeed) * m1
	n := len(s)
	if !littleEndian || n < 8 {
		for i := 0; i < n; i++ {
			h = bits.RotateLeft64((h^uint64(s[i]))*m2, 29)
		}
	} else {
		p := unsafe.Pointer(unsafe.StringData(s))
		for ; n > 8; n -= 8 {
			h = bits.RotateLeft64((h^*(*uint64)(p))*m2, 29)
			p = unsafe.Add(p, 8)
		}
		// The last word ends at the text's end (it may overlap the one before).
		h = bits.RotateLeft64((h^*(*uint64)(unsafe.Add(p, n-8)))*m2, 29)
	}
	h ^= h >> 32
	h *= m1
	return h ^ h>>29
}

// hashSeed makes textHash differ from one process to the next, as Go's own maps are
// seeded: texts a peer chose to share the first slots of the engine's tables (the objects
// by identity, the metadata texts), making every lookup a long probe, cannot be prepared
// in advance.
var hashSeed = rand.Uint64()

// textEqual is a == b, eight bytes at a time: Go's wasm runtime compares strings byte by
// byte (memeqbody). Equal pointers end it at once.
func textEqual(a, b string) bool {
	n := len(a)
	if n != len(b) {
		return false
	}
	p, q := unsafe.Pointer(unsafe.StringData(a)), unsafe.Pointer(unsafe.StringData(b))
	if n == 0 || p == q {
		return true
	}
	if !littleEndian {
		return a == b
	}
	if n < 8 { // two words of four that may overlap, or the bytes
		if n >= 4 {
			return *(*uint32)(p) == *(*uint32)(q) && *(*uint32)(unsafe.Add(p, n-4)) == *(*uint32)(unsafe.Add(q, n-4))
		}
		for i := range n {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	for ; n > 8; n -= 8 {
		if *(*uint64)(p) != *(*uint64)(q) {
			return false
		}
		p, q = unsafe.Add(p, 8), unsafe.Add(q, 8)
	}
	// The last word ends at the texts' end (it may overlap the one before).
	return *(*uint64)(unsafe.Add(p, n-8)) == *(*uint64)(unsafe.Add(q, n-8))
}

// parseTop parses a message's envelope into the reused top buffer.
func (d *decoder) parseTop(s string) ([]member, error) {
	if d.ends == nil {
		d.ends = endMemo{}
	} else if len(d.ends) > 0 {
		clear(d.ends) // left by a message whose receive did not return (a panic)
	}
	ms, err := parseObjectEnds(d.top, &d.arena, d.ends, s, d.lim.wireDepth())
	if cap(ms) > cap(d.top) {
		d.top = ms[:0]
	}
	return ms, err
}

// elemMembers lists the members of one operation of a list, into the reused elem buffer.
// The list is part of a message already parsed (validated and canonical).
func (d *decoder) elemMembers(s string) []member {
	d.elem = validMembers(d.elem, s)
	return d.elem
}

// knownPeerTS parses a clock's text that ends in ':' and the id of the peer named last
// (d.lastPeer, checked when first met): its bytes are compared, not checked again, and only
// the numbers are read. ok false: another text, which Parse reads.
func (d *decoder) knownPeerTS(text string) (hlc.Timestamp, bool) {
	p := d.lastPeer
	n := len(text) - len(p) - 1
	if p == "" || n < 3 || text[n] != ':' || !textEqual(text[n+1:], p) {
		return hlc.Timestamp{}, false
	}
	wall, counter, ok := hlc.ParseWallCounter(text[:n])
	return hlc.Timestamp{Wall: wall, Counter: counter, Peer: p}, ok
}

// peer returns the interned copy of id: listed in fresh if new; an owned copy past maxPeers.
func (d *decoder) peer(id string) string {
	if textEqual(id, d.lastPeer) { // messages come in runs from one peer: no hashing of the id
		return d.lastPeer
	}
	if p, ok := d.peers[id]; ok {
		d.lastPeer = p
		return p
	}
	id = strings.Clone(id)
	if len(d.peers) >= maxPeers {
		return id // owned, not shared
	}
	if d.peers == nil {
		d.peers = map[string]string{}
	}
	d.peers[id] = id
	d.fresh.peers = append(d.fresh.peers, id)
	d.made = true
	return id
}

// What the decoder interns is bounded: past maxPeers peer ids, maxPaths paths or
// maxKeyBytes bytes of key text (the paths' and byKey's), a new peer id or path is kept as
// it is: owned by its operation, not shared. Measured at the bounds: 65,536 peer ids of
// 120 bytes take 13 MB; 65,536 paths of 27-byte keys 36 MB, 2,074 of 1 KiB (the byte
// bound) 11 MB — where 65,536 of 1 KiB took ~350 MB. An honest map names a few hundred
// paths of a few dozen bytes, and one peer id per editing session.
const (
	maxPeers    = 1 << 16
	maxPaths    = 1 << 16
	maxKeyBytes = 4 << 20
)

// interned lists what the decoder added to its tables while decoding the current call's
// operations, which may yet be refused: the replica keeps it when it commits the objects
// met (keepInterned, from commitPending), and takes it out when it drops them
// (dropInterned, from dropPending). A refused message, which may carry any number of new
// peer ids and keys, leaves nothing behind.
type interned struct {
	peers []string   // ids added to peers
	parts []string   // parts added to parts
	paths [][]string // paths added to paths
	keys  []string   // keys added to byKey
}

// keepInterned keeps what the current call interned: its new paths' key texts are
// remembered (keyText) from now on.
func (d *decoder) keepInterned() {
	for _, p := range d.fresh.paths {
		d.keyText.add(pathKey(p), keyText{text: JoinPath(p...), json: string(appendKeyJSON(nil, p)), n: len(p)})
	}
	d.fresh.reset()
}

// dropInterned takes what the current call interned out of the tables. A table that held
// far more while the call decoded is rebuilt at the size of what it keeps (a Go map does
// not shrink): a refused message's hundred thousand peer ids leave no room behind.
func (d *decoder) dropInterned() {
	f := &d.fresh
	for _, k := range f.keys {
		delete(d.byKey, k)
		d.keyBytes -= len(k)
		if len(k) >= 2 {
			if s := &d.keySlots[keySlotOf(k)]; s.path != nil && unsafe.StringData(s.key) == unsafe.StringData(k) {
				*s = keySlot{}
			}
		}
	}
	for _, p := range f.paths {
		k := pathText(p)
		delete(d.paths, k)
		d.keyBytes -= len(k)
	}
	for _, q := range f.parts {
		delete(d.parts, q)
	}
	for _, id := range f.peers {
		delete(d.peers, id)
	}
	if _, ok := d.peers[d.lastPeer]; !ok {
		d.lastPeer = ""
	}
	d.peers = shrunk(d.peers, len(f.peers))
	d.parts = shrunk(d.parts, len(f.parts))
	d.paths = shrunk(d.paths, len(f.paths))
	d.byKey = shrunk(d.byKey, len(f.keys))
	f.reset()
}

// shrunk returns m, or a copy of it sized to what it holds when removed, the number of
// entries just removed, is more than it holds (and than a few).
func shrunk[V any](m map[string]V, removed int) map[string]V {
	if removed <= 64 || removed <= len(m) {
		return m
	}
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// reset empties the lists: small ones are kept for the next call, large ones dropped.
func (f *interned) reset() {
	f.peers = resetList(f.peers)
	f.parts = resetList(f.parts)
	f.paths = resetList(f.paths)
	f.keys = resetList(f.keys)
}

func resetList[T any](l []T) []T {
	if cap(l) > 64 {
		return nil
	}
	clear(l)
	return l[:0]
}

// pathText is the key of parts in paths: the parts joined with NUL.
func pathText(parts []string) string {
	var buf [128]byte
	return string(appendPathText(buf[:0], parts))
}

func appendPathText(k []byte, parts []string) []byte {
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// path interns a parsed key: every operation on "properties.name" shares one []string, and
// its parts are shared with every other path. The state compares paths part by part on every
// write; shared paths stay in the CPU cache, and equal parts compare by pointer without
// reading memory. It also stores each distinct path once. Bounded (maxPaths, maxKeyBytes):
// past the bounds, new paths are kept as they are (only the sharing is lost). A new path is
// listed in fresh: its key text enters keyText once the call is committed.
func (d *decoder) path(parts []string) []string {
	if d.paths == nil {
		d.paths = map[string][]string{}
	}
	var buf [128]byte
	k := appendPathText(buf[:0], parts)
	if shared, ok := d.paths[string(k)]; ok {
		return shared
	}
	if len(d.paths) >= maxPaths || d.keyBytes+len(k) > maxKeyBytes {
		for i, p := range parts {
			parts[i] = strings.Clone(p) // not shared, but owned
		}
		return parts
	}
	if d.parts == nil {
		d.parts = map[string]string{}
	}
	shared := make([]string, len(parts))
	for i, p := range parts {
		q, ok := d.parts[p]
		if !ok {
			q = strings.Clone(p)
			d.parts[q] = q
			d.fresh.parts = append(d.fresh.parts, q)
		}
		shared[i] = q
	}
	d.paths[string(k)] = shared
	d.keyBytes += len(k)
	d.fresh.paths = append(d.fresh.paths, shared)
	d.made = true
	return shared
}

// pathKey is keyText's key of a path (len(path) > 0): the address of its first element.
// An interned path stays in d.paths as long as the decoder, and Go's collector moves
// nothing, so the address names it for that long.
func pathKey(path []string) uint64 { return uint64(uintptr(unsafe.Pointer(&path[0]))) }

// keyText is the key text of an interned path of n parts.
type keyText struct {
	text string
	json string // text as a JSON string (appendKeyJSON)
	n    int
}

// keyOf returns the key text of path: remembered for an interned path (not for a prefix of
// one, which starts at the same element), built otherwise.
func (d *decoder) keyOf(path []string) string {
	if d != nil && len(path) > 0 {
		if k := d.keyText.get(pathKey(path)); k != nil && k.n == len(path) {
			return k.text
		}
	}
	return JoinPath(path...)
}

// appendKey appends the key text of path as a JSON string: remembered for an interned path,
// written otherwise (d may be nil).
func (d *decoder) appendKey(b []byte, path []string) []byte {
	if d != nil && len(path) > 0 {
		if k := d.keyText.get(pathKey(path)); k != nil && k.n == len(path) {
			return append(b, k.json...)
		}
	}
	return appendKeyJSON(b, path)
}

// parseKey parses and interns key, looking the key text up first: a page writes the same few
// keys again and again. The keys met last are in keySlots, where the key text is compared
// with one slot's (most keys differ in length or their last bytes) instead of hashed for the
// map.
func (d *decoder) parseKey(key string) ([]string, error) {
	var slot *keySlot
	if len(key) >= 2 {
		slot = &d.keySlots[keySlotOf(key)]
		if slot.path != nil && textEqual(slot.key, key) {
			return slot.path, nil
		}
	}
	if e, ok := d.byKey[key]; ok {
		if slot != nil {
			*slot = e
		}
		return e.path, nil
	}
	parts, err := parsePath(key, d.lim)
	if err != nil {
		return nil, err
	}
	parts = d.path(parts)
	if len(d.byKey) < maxPaths && d.keyBytes+len(key) <= maxKeyBytes {
		if d.byKey == nil {
			d.byKey = map[string]keySlot{}
		}
		e := keySlot{key: strings.Clone(key), path: parts}
		d.byKey[e.key] = e
		d.keyBytes += len(key)
		d.fresh.keys = append(d.fresh.keys, e.key)
		d.made = true
		if slot != nil {
			*slot = e
		}
	}
	return parts, nil
}

// keySlot is a key text (owned) and its interned path.
type keySlot struct {
	key  string
	path []string
}

// keySlotOf returns the slot of keySlots for a key of at least two bytes.
func keySlotOf(key string) int {
	n := len(key)
	return (n + 3*int(key[n-1]) + int(key[n-2])) & 15
}

// subject returns the subject named name, or nil.
func (d *decoder) subject(name string) *Subject {
	if s := d.lastSub; s != nil && textEqual(s.Name, name) {
		return s
	}
	s := d.subjects[name]
	if s != nil {
		d.lastSub = s
	}
	return s
}

// own returns s as a string that does not share memory with a larger message (the parser
// returns slices of its input where the input is already canonical).
func own(s string) string { return strings.Clone(s) }

// envelope fields that are not part of the operation itself.
func isEnvelopeField(name string) bool { return name == "kind" || name == "sender" }

// opFields are the members of one operation as read from the wire, before they are checked
// together and turned into an op (decoder.build). Strings point into the message.
type opFields struct {
	verb, subject, key, hlcText, meta, value, opsRaw string
	seq                                              uint64
	extra                                            []byte // unknown members, `"name":value,…`
	hasVerb, hasSubject, hasKey, hasHLC              bool
	hasValue, hasMeta, hasOps                        bool
	metaObj                                          *object // meta's object, when canonicalOp found it held (d.known)
}

// decodeOp reads one operation from its members. top says whether it is a top-level
// operation (which needs an hlc) or a batch's sub-operation (which must not have one).
func (d *decoder) decodeOp(members []member, top bool) (*op, error) {
	var f opFields
	for _, m := range members {
		switch m.name {
		case "verb":
			if f.verb, f.hasVerb = stringValue(m.val); !f.hasVerb {
				return nil, newError(ErrBadMessage, "verb must be a string, got "+quote(m.val))
			}
		case "subject":
			if f.subject, f.hasSubject = stringValue(m.val); !f.hasSubject {
				return nil, newError(ErrBadMessage, "subject must be a string, got "+quote(m.val))
			}
		case "metadata":
			if err := d.lim.checkMemberDepth(m.name, m.val); err != nil {
				return nil, err
			}
			f.meta, f.hasMeta = m.val, true
		case "key":
			if f.key, f.hasKey = stringValue(m.val); !f.hasKey {
				return nil, newError(ErrBadKey, "key must be a string, got "+quote(m.val))
			}
			if len(f.key) != len(m.val)-2 && loneSurrogate(m.val[1:len(m.val)-1]) {
				return nil, newError(ErrBadKey, "key escapes a lone UTF-16 surrogate: "+quote(m.val))
			}
		case "value":
			f.value, f.hasValue = m.val, true
		case "hlc":
			s, ok := stringValue(m.val)
			if !ok {
				return nil, newError(ErrBadHLC, "hlc must be a string, got "+quote(m.val))
			}
			f.hlcText, f.hasHLC = s, true
		case "seq":
			n, ok := parseSeq(m.val)
			if !ok {
				return nil, newError(ErrBadMessage, "seq must be an integer in [1, 2^53), got "+quote(m.val))
			}
			f.seq = n
		case "operations":
			f.opsRaw, f.hasOps = m.val, true
		default:
			if top && isEnvelopeField(m.name) {
				continue
			}
			if err := d.lim.checkMemberDepth(m.name, m.val); err != nil {
				return nil, err
			}
			f.extra = appendExtra(f.extra, m.name, m.val)
		}
	}
	return d.build(&f, top)
}

// build checks the members of one operation together and makes the op (see decodeOp).
func (d *decoder) build(f *opFields, top bool) (*op, error) {
	o := d.blk.next()
	o.seq = f.seq
	extra := f.extra
	if !f.hasVerb {
		return nil, newError(ErrBadMessage, "operation without a verb")
	}
	v, ok := parseVerb(f.verb)
	if !ok {
		return nil, newError(ErrUnknownVerb, "unknown verb "+quote(f.verb))
	}
	o.verb = v
	if top {
		if !f.hasHLC {
			return nil, newError(ErrBadHLC, "operation without an hlc")
		}
		if ts, ok := d.knownPeerTS(f.hlcText); ok {
			o.ts = ts
		} else {
			ts, err := hlc.Parse(f.hlcText)
			if err != nil {
				return nil, hlcError(err)
			}
			ts.Peer = d.peer(ts.Peer)
			o.ts = ts
		}
	} else {
		if f.hasHLC {
			return nil, newError(ErrBadMessage, "a batch's sub-operation carries its own hlc")
		}
		if o.seq != 0 {
			return nil, newError(ErrBadMessage, "a batch's sub-operation carries its own seq")
		}
	}
	if v == VerbBatch {
		if !top {
			return nil, newError(ErrBadMessage, "a batch inside a batch")
		}
		if !f.hasOps || len(f.opsRaw) == 0 || f.opsRaw[0] != '[' {
			return nil, newError(ErrBadMessage, "a batch needs an array of operations")
		}
		var err error
		n := 0
		eachElement(f.opsRaw, func(raw string) bool {
			n++
			if n > d.lim.MaxBatch {
				err = newError(ErrTooLarge, "batch of more than "+strconv.Itoa(d.lim.MaxBatch)+" operations")
				return false
			}
			var ms []member
			if !isObject(raw) {
				err = newError(ErrBadMessage, "a batch's operation must be an object, got "+quote(raw))
				return false
			}
			d.sub = validMembers(d.sub, raw) // raw is part of a parsed message
			ms = d.sub
			var sub *op
			sub, err = d.decodeOp(ms, false)
			if err != nil {
				return false
			}
			o.addSub(sub)
			return true
		})
		if err != nil {
			return nil, err
		}
		if len(o.subOps()) == 0 {
			return nil, newError(ErrBadMessage, "an empty batch")
		}
		// uMap's batch names the object its caller edits ({verb, operations, subject,
		// metadata}: engine.js commitBatch): kept and passed on, as unknown fields are —
		// but for a subject alone that is its first operation's, which appendOpWith writes
		// (a mapcrdt batch): kept, it would make the operation one with extra fields, which
		// the compact form writes whole.
		if f.hasMeta {
			extra = appendExtra(extra, "metadata", f.meta)
		}
		if f.hasSubject && (f.hasMeta || len(extra) > 0 || f.subject != o.subOps()[0].obj.subject.Name) {
			extra = appendExtra(extra, "subject", string(appendString(nil, f.subject)))
		}
		o.setExtra(string(extra))
		return o, nil
	}
	if f.hasOps {
		if err := d.lim.checkMemberDepth("operations", f.opsRaw); err != nil {
			return nil, err
		}
		extra = appendExtra(extra, "operations", f.opsRaw)
	}
	if !f.hasSubject {
		return nil, newError(ErrBadMessage, "operation without a subject")
	}
	sub := d.subject(f.subject)
	if sub == nil {
		return nil, newError(ErrUnknownSubject, "unknown subject "+quote(f.subject))
	}
	meta := f.meta
	if !f.hasMeta {
		meta = "{}"
	} else if !isObject(meta) {
		return nil, newError(ErrBadMetadata, "metadata must be an object, got "+quote(meta))
	}
	// A known metadata text: no walk over it for the identity, and no comparison with
	// obj.meta below (it is obj.meta, or equal to it).
	obj := f.metaObj
	if obj == nil {
		obj = d.known(meta)
	}
	sameMeta := obj != nil && obj.subject == sub
	if !sameMeta {
		var err error
		if d.keyBuf, err = d.identityKey(sub, meta); err != nil {
			return nil, err
		}
		obj = nil
	}
	var err error
	switch v {
	case VerbUpdate:
		if !f.hasKey {
			return nil, newError(ErrBadKey, "update without a key")
		}
		if o.path, err = d.parseKey(f.key); err != nil {
			return nil, err
		}
		o.setKey(f.key)
		o.value = d.blk.clone(f.value)
		if err := d.lim.checkDepth(o.value, o.path); err != nil {
			return nil, err
		}
	case VerbUpsert:
		if !f.hasValue || !isObject(f.value) {
			return nil, newError(ErrBadValue, "upsert needs an object value, got "+quote(f.value))
		}
		if err := d.lim.checkDepth(f.value, nil); err != nil {
			return nil, err
		}
		o.value = d.blk.clone(f.value)
		if f.hasKey {
			extra = appendExtra(extra, "key", string(appendString(nil, f.key)))
		}
	case VerbDelete:
		if f.hasKey {
			extra = appendExtra(extra, "key", string(appendString(nil, f.key)))
		}
		if f.hasValue {
			extra = appendExtra(extra, "value", f.value)
		}
	}
	if len(extra) > 0 {
		o.setExtra(string(extra))
	}
	if obj == nil {
		obj = d.objects(sub, d.keyBuf, meta, v == VerbUpdate)
	}
	o.obj = obj
	if !sameMeta && !textEqual(meta, o.obj.meta) {
		o.setMeta(own(meta))
	}
	return o, nil
}

func appendExtra(extra []byte, name string, val string) []byte {
	if len(extra) > 0 {
		extra = append(extra, ',')
	}
	extra = appendString(extra, name)
	extra = append(extra, ':')
	return append(extra, val...)
}

// extraHas reports whether extra, an operation's unknown fields (`"name":value,…`), has a
// member called name.
func extraHas(extra, name string) bool {
	if extra == "" {
		return false
	}
	it := members("{" + extra + "}")
	for n, _, ok := it.next(); ok; n, _, ok = it.next() {
		if n == name {
			return true
		}
	}
	return false
}

// stringValue decodes a canonical JSON string value.
func stringValue(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	return decodeString(raw[1 : len(raw)-1]), true
}

func parseSeq(raw string) (uint64, bool) {
	if raw == "" || len(raw) > 16 || raw[0] == '0' {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(raw); i++ {
		c := raw[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	return n, n > 0 && n < 1<<53 // 16 digits do not overflow
}

// eachElement calls fn with each element of a canonical JSON array until fn returns false.
func eachElement(raw string, fn func(string) bool) {
	if len(raw) < 2 || raw[0] != '[' {
		return
	}
	p := jparser{s: raw, i: 1, maxDepth: 1 << 30}
	if raw[1] == ']' {
		return
	}
	for p.err == nil && p.i < len(raw) {
		start := p.i
		p.skip()
		if p.err != nil || !fn(raw[start:p.i]) {
			return
		}
		if p.i >= len(raw) || raw[p.i] != ',' {
			return
		}
		p.i++
	}
}

// appendOp writes o as wire JSON. With sender non-empty it is a full OperationMessage (with
// "kind" and "sender"); otherwise the bare operation, as inside a sync response. Members
// are written in canonical (sorted) order, so that a receiving engine validates the text
// without rewriting it (json.go's fast path); unknown fields the operation carried follow.
func appendOp(b []byte, o *op, sender string) []byte {
	if sender != "" {
		sender = string(appendString(nil, sender))
	}
	return appendOpWith(nil, b, o, sender)
}

// appendOpWith is appendOp with the sender written as JSON already (or ""), and the key
// texts d remembers (d may be nil).
func appendOpWith(d *decoder, b []byte, o *op, senderJSON string) []byte {
	// Each member is written with the comma before it, in one append of constant text
	// where members always come together; the first comma becomes the opening brace at the
	// end ("verb" is always there). Fewer, longer appends: each is a call in wasm.
	start := len(b)
	if !o.ts.IsZero() {
		b = appendLit(b, `,"hlc":"`)
		b = o.ts.AppendText(b)
		b = append(b, '"')
	}
	if o.verb == VerbUpdate {
		b = appendLit4(b, `,"key":`)
		if o.x != nil && o.x.key != "" {
			b = appendString(b, o.x.key)
		} else {
			b = d.appendKey(b, o.path)
		}
	}
	if o.verb == VerbBatch {
		if senderJSON != "" {
			b = append(b, `,"kind":"OperationMessage","operations":[`...)
		} else {
			b = appendLit(b, `,"operations":[`)
		}
		for i, s := range o.subOps() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendOpWith(d, b, s, "")
		}
		b = append(b, ']')
	} else {
		if senderJSON != "" {
			b = append(b, `,"kind":"OperationMessage","metadata":`...)
		} else {
			b = appendLit(b, `,"metadata":`)
		}
		if m := o.meta(); m != "" {
			b = append(b, m...)
		} else {
			b = append(b, o.obj.meta...)
		}
	}
	if senderJSON != "" {
		b = appendLit(b, `,"sender":`)
		b = append(b, senderJSON...)
	}
	if o.seq != 0 {
		b = appendLit4(b, `,"seq":`)
		b = appendNum(b, o.seq)
	}
	if o.verb == VerbBatch && senderJSON != "" && len(o.subOps()) > 0 && !extraHas(o.extra(), "subject") {
		// uMap's server takes an OperationMessage only with a subject (umap/sync/payloads.py),
		// a batch's too: its first operation's, as uMap's client names the object its batch
		// edits (engine.js commitBatch). Messages only: a sync response's batches go without.
		b = appendLit(b, `,"subject":`)
		b = appendString(b, o.subOps()[0].obj.subject.Name)
	}
	if o.verb != VerbBatch {
		b = appendLit(b, `,"subject":`)
		b = appendString(b, o.obj.subject.Name)
		if o.value != "" {
			b = appendLit(b, `,"value":`)
			b = append(b, o.value...)
		}
	}
	if int(o.verb) < len(verbMembers) && verbMembers[o.verb] != "" {
		b = appendLit(b, verbMembers[o.verb])
	} else {
		b = append(b, `,"verb":"`...)
		b = append(b, o.verb.String()...)
		b = append(b, '"')
	}
	if x := o.extra(); x != "" {
		b = append(b, ',')
		b = append(b, x...)
	}
	b = append(b, '}')
	b[start] = '{'
	return b
}

// verbMembers are the verbs' members as appendOpWith writes them.
var verbMembers = [...]string{VerbUpdate: `,"verb":"update"`, VerbUpsert: `,"verb":"upsert"`, VerbDelete: `,"verb":"delete"`, VerbBatch: `,"verb":"batch"`}
