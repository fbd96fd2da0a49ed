package crdt

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"unsafe"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Options configure a Replica. Start from DefaultOptions.
type Options struct {
	// PeerID is this replica's id; empty means a fresh UUID. It is printable ASCII without
	// spaces, '"', '\\' or ':', at most hlc.MaxPeerLen bytes (ErrBadOption otherwise).
	PeerID string
	// Wall is the wall clock; nil means the system clock.
	Wall hlc.WallClock
	// MaxDrift is how far ahead of the wall clock a remote clock may be (default 60 s).
	MaxDrift hlc.Duration
	// Subjects is the subject table; nil means DefaultSubjects(). The replica keeps its own
	// copy (IDFields included): the caller may reuse the slices.
	Subjects []Subject
	// Limits bound input; the zero value means DefaultLimits(). Otherwise every field must
	// be set, positive (MaxDepth above 2; start from DefaultLimits()): a Limits with a field
	// left at zero is refused (ErrBadOption).
	Limits Limits
	// UndoDepth is how many undo steps are kept (default 100).
	UndoDepth int
	// CaptureInterval groups consecutive local edits made within it into one undo step
	// (0, the default, makes every edit its own step) — until the step holds more than the
	// undo budget (Limits.MaxMessageBytes of values to restore): the next edit starts a step.
	CaptureInterval hlc.Duration
	// SyncPage is how many operations one ListOperationsResponse to a mapcrdt peer carries
	// at most (0 means DefaultSyncPage). A response is also kept to about half of
	// Limits.MaxMessageBytes. What does not fit follows page by page: the asker's replica
	// answers each partial page with a request for the rest (see Replica.Receive).
	SyncPage int
}

// DefaultSyncPage is how many operations a sync response carries at most by default: a
// page a browser applies in ~10 ms, and far below Limits.MaxBatch.
const DefaultSyncPage = 10_000

// DefaultOptions returns the options of a replica with a fresh peer id and default limits.
func DefaultOptions() Options {
	return Options{MaxDrift: hlc.DefaultMaxDrift, Limits: DefaultLimits(), UndoDepth: 100, SyncPage: DefaultSyncPage}
}

func (o *Options) verify() error {
	if o.PeerID == "" {
		o.PeerID = newPeerID()
	}
	if err := hlc.ValidPeer(o.PeerID); err != nil {
		return newError(ErrBadOption, "peerId "+quote(o.PeerID)+": "+err.Error())
	}
	if o.MaxDrift == 0 {
		o.MaxDrift = hlc.DefaultMaxDrift
	}
	if o.MaxDrift < 0 {
		return newError(ErrBadOption, "maxDrift must not be negative")
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if err := o.Limits.verify(); err != nil {
		return err
	}
	if o.UndoDepth == 0 {
		o.UndoDepth = 100
	}
	if o.UndoDepth < 0 || o.CaptureInterval < 0 {
		return newError(ErrBadOption, "undoDepth and captureInterval must not be negative")
	}
	if o.SyncPage == 0 {
		o.SyncPage = DefaultSyncPage
	}
	if o.SyncPage < 0 {
		return newError(ErrBadOption, "syncPage must not be negative")
	}
	if o.Subjects == nil {
		o.Subjects = DefaultSubjects()
	}
	seen := map[string]bool{}
	for _, s := range o.Subjects {
		if s.Name == "" || seen[s.Name] {
			return newError(ErrBadOption, "subject names must be unique and non-empty: "+quote(s.Name))
		}
		seen[s.Name] = true
	}
	return nil
}

// Replica is one copy of a map's state: the objects, the operation log, the version vector,
// the outbox, the undo stacks and the save marks. It is not safe for concurrent use; the
// wasm module and the relay each serialize calls to their replicas. Distinct replicas share
// nothing: each may be used from its own goroutine at once (Merge too). Create one with
// NewReplica or NewReplicaFromSnapshot: the zero value is not usable (it refuses every
// message, knows no subject, and some methods panic on it).
type Replica struct {
	opts       Options
	peer       string
	peerJSON   string // peer as a JSON string: the sender of every message sent
	clock      *hlc.Clock
	objects    objectTable // by identity key
	pending    []*object   // objects met while decoding: kept on success (see objectFor)
	dec        decoder
	bulk       bulk // the blocks a compact decode takes its operations and values from
	objBlocks  objectBlocks
	log        opLog
	vec        vectorState
	origin     string           // the peer id inside this replica's clocks (see reincarnate)
	origins    map[string]bool  // every origin this replica has stamped with
	seqs       ownSeqs          // last seq published, per own origin
	restored   bool             // restored from a snapshot, no local edit since
	stamped    bool             // stamped an operation under the current origin (ownBeyond)
	ownSeen    bool             // took a peer's operation of the current origin past its seqs (raiseOwn)
	metaCache  table64[metaHit] // the hash of subject and metadata text → object (see identifyWithMeta)
	outbox     []*op            // local operations not yet published (flushed)
	batch      *op              // open local batch
	batchBytes int              // about the most bytes its message takes so far (fitsMessage)
	undo       undoStacks
	saved      hlc.Timestamp // saved horizon
	savedBy    VersionVector // per own origin, the highest seq a peer held when it saved
	// session is this replica object's random token, never in a snapshot: its sync requests
	// carry it and the answers echo it, so that one answering a request made before a reload
	// from a snapshot (a vector the replica may no longer hold) is told apart (takeResponse).
	session     string
	peers       []string
	trk         tracker  // reused by every call that reports changes (see track)
	trkGen      uint32   // the number of the last call that tracked changes (see tracker.gen)
	changeBuf   []Change // set by ReceiveAppend for the call: where the changes go
	changeChunk []Change // room for the changes of the next Receive calls (see Receive)
	one         [1]*op   // the operation of an OperationMessage, without an allocation
	teaching    bool     // in ReceiveTaught: takeResponse lists in taught what its log took
	taught      []*op
}

// NewReplica returns an empty replica. Its peer id (Options.PeerID) holds no ':': uMap's
// client reads a clock's text as three parts split at ':' and drops an operation whose
// clock has more (hlc.js), so a replica under such an id would edit alone. (A snapshot of
// a replica made before this rule still restores: NewReplicaFromSnapshot.)
func NewReplica(opts Options) (*Replica, error) {
	if strings.Contains(opts.PeerID, ":") {
		return nil, newError(ErrBadOption, "peerId "+quote(opts.PeerID)+" holds ':', which uMap's peers read as the end of a clock's counter")
	}
	return newReplica(opts)
}

// newReplica is NewReplica without the rule on ':'.
func newReplica(opts Options) (*Replica, error) {
	if err := opts.verify(); err != nil {
		return nil, err
	}
	r := &Replica{
		opts:     opts,
		peer:     opts.PeerID,
		peerJSON: string(appendString(nil, opts.PeerID)),
		clock:    hlc.New(opts.PeerID, opts.Wall),
		vec:      newVectorState(),
		origin:   opts.PeerID,
		origins:  map[string]bool{opts.PeerID: true},
		seqs:     ownSeqs{origin: opts.PeerID, others: map[string]uint64{}},
		session:  randomToken(8),
	}
	r.clock.SetMaxDrift(opts.MaxDrift)
	subs := map[string]*Subject{}
	for i := range opts.Subjects {
		s := opts.Subjects[i]
		s.IDFields = append([]string(nil), s.IDFields...) // the caller's slice may be reused
		subs[s.Name] = &s
	}
	r.dec = decoder{subjects: subs, lim: opts.Limits, objects: r.objectFor, blk: &r.bulk}
	return r, nil
}

// now stamps a local operation.
func (r *Replica) now() hlc.Timestamp {
	if r.restored || r.ownSeen {
		r.reincarnate()
	}
	r.stamped = true
	return r.clock.Now()
}

// reincarnate gives a replica restored from a snapshot a new origin, at its first local edit
// or flush — and a fresh replica that took a peer's operation of its own origin past its
// seqs (its id used by an earlier page, see ownBeyond), at its first edit. The snapshot may be older than what the replica had already sent (a reload from
// an IndexedDB copy saved before the last flush): continuing the old origin's seqs would
// give an operation a seq another one already has, and peers holding that seq would never
// ask for it. So new operations, and the operations waiting in the restored outbox, take the
// new origin — the peer id with a random suffix ("alice~k3f9q2"); every origin stays "ours"
// for undo and Dirty. Queued operations keep their walltime and counter; as the peer id is
// the last tie-break of the clock order, the state is rebuilt from the log to stay exact.
func (r *Replica) reincarnate() {
	r.restored, r.ownSeen = false, false
	base := r.peer
	if len(base) > hlc.MaxPeerLen-8 {
		base = base[:hlc.MaxPeerLen-8]
	}
	last := r.clock.Last()
	r.origin = base + "~" + randomToken(7)
	r.seqs.setOrigin(r.origin)
	r.origins[r.origin] = true
	r.clock = hlc.New(r.origin, r.opts.Wall)
	r.clock.SetMaxDrift(r.opts.MaxDrift)
	r.clock.Observe(last)
	if len(r.outbox) == 0 {
		return
	}
	for _, o := range r.outbox {
		if o.ts == r.saved {
			// The saved horizon named this edit (SavedMessage while it waited): it names it
			// still, or the new origin's suffix could sort the edit after it, dirty again.
			r.saved.Peer = r.origin
		}
		was := o.ts
		o.ts.Peer = r.origin
		// An edit made with Edit.NoUndo names its own clock as the work it restores
		// (ApplyAppend): it names it still, or an undo would take it for the step's own.
		if o.x != nil && o.x.restores == was {
			o.x.restores = o.ts
		}
		for _, t := range o.subOps() {
			if t.x != nil && t.x.restores == was {
				t.x.restores = o.ts
			}
		}
	}
	sortStable(r.log.ops, func(a, b *op) int { return a.ts.Compare(b.ts) })
	r.rebuild()
}

// randIntN is the random source of the replica's choices (a peer to ask, an origin's
// suffix, a session token): a test replaces it with a seeded one, so that a failing seed
// runs again with the same choices.
var randIntN = rand.IntN

// randomToken returns n random letters and digits.
func randomToken(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[randIntN(len(digits))]
	}
	return string(b)
}

// rebuild recomputes the state from the log and the seeded bases.
func (r *Replica) rebuild() {
	r.objects.each(func(o *object) {
		base := o.root
		if base.op != nil && !base.op.ts.IsZero() {
			base = write{}
		}
		o.root, o.paths = base, nil
	})
	for _, o := range r.log.ops {
		o.live = 0
	}
	for _, o := range r.log.ops {
		r.applyOp(o)
	}
}

// isOwn reports whether origin is one of this replica's.
func (r *Replica) isOwn(origin string) bool {
	if origin == r.origin {
		return true
	}
	return len(r.origins) > 1 && r.origins[origin] // most replicas have one origin, r.origin
}

// PeerID returns the replica's peer id.
func (r *Replica) PeerID() string { return r.peer }

// Clock returns the replica's clock: at or after every clock it has issued or received
// (receiving moves it past the remote clock); its next edit is stamped after it.
func (r *Replica) Clock() hlc.Timestamp { return r.clock.Last() }

// Vector returns a copy of the version vector.
func (r *Replica) Vector() VersionVector { return r.vec.vector().Clone() }

// objectFor returns the object with identity key, creating it (pending) if new. A new
// object enters the objects table at once — a catch-up's tens of thousands cost one
// insertion each, not two — and leaves it again if the call fails (dropPending); pending
// lists them. paths says the object is made for a path write (an update): it is then
// allocated with room for its first ones (objectAlloc).
func (r *Replica) objectFor(sub *Subject, key []byte, meta string, paths bool) *object {
	h := textHash(unsafe.String(unsafe.SliceData(key), len(key)))
	if o := r.objects.find(unsafe.String(unsafe.SliceData(key), len(key)), h); o != nil {
		if o.known && textEqual(meta, o.meta) { // named by its first metadata text: found by it from now on
			r.dec.remember(o)
		}
		return o
	}
	o := r.objBlocks.object(sub, key, meta, paths)
	r.objects.insert(o, h)
	r.pending = append(r.pending, o)
	r.dec.made = true
	return o
}

// reserve makes room in the objects table for n new objects (a catch-up's list of them):
// the table grows once to its new size instead of through every size on the way.
func (r *Replica) reserve(n int) {
	r.objects.reserve(n)
}

// commitPending keeps the objects met while decoding, and the peer ids and paths interned;
// dropPending forgets them.
func (r *Replica) commitPending() {
	if r.dec.made { // the usual receive makes no object and interns nothing: a call less
		r.commitObjects()
	}
	r.bulk.keep()
}

// commitObjects is commitPending when the call made something.
func (r *Replica) commitObjects() {
	r.dec.made = false
	r.dec.keepInterned()
	if len(r.pending) == 0 {
		return
	}
	// The objects of a live edit or message enter dec.byMeta now: the next message naming
	// one (a peer's next edit of the feature, or the answer to the edit that made it) finds
	// it by its text, where a first lookup by identity parsed the metadata (~2,700
	// instructions). A catch-up's many objects enter it only when named again (objectFor):
	// most are not soon, and the map would cost them an insertion each now.
	few := len(r.pending) <= rememberedAtCommit
	for _, o := range r.pending {
		o.known = true
		if few {
			r.dec.remember(o)
		}
	}
	r.clearPending()
}

// rememberedAtCommit is the most new objects a call commits into dec.byMeta at once.
const rememberedAtCommit = 16

// dropPending removes the objects met while decoding from the objects table, and what the
// decoder interned meanwhile from its tables (see interned).
func (r *Replica) dropPending() {
	for _, o := range r.pending {
		r.objects.remove(o)
		*o = object{} // its block is shared with objects kept: its texts are not kept with them
	}
	r.clearPending()
	r.bulk.drop() // the operations made: likewise
	if r.dec.made {
		r.dec.made = false
		r.dec.dropInterned()
	}
}

// clearPending empties pending: a small list is kept for the next call, a large one dropped.
func (r *Replica) clearPending() {
	if cap(r.pending) <= 64 {
		clear(r.pending)
		r.pending = r.pending[:0]
	} else {
		r.pending = nil
	}
}

// identify resolves subject + metadata (JSON text) to an object (pending until committed).
func (r *Replica) identify(subject, metadata string) (*object, error) {
	o, _, err := r.identifyWithMeta(subject, metadata, false)
	return o, err
}

// identifyWithMeta is identify that also returns the canonical metadata given: a scratch
// text, valid until the next call (a caller that keeps it copies it). paths: a new object
// is made for a path write (see objectFor).
func (r *Replica) identifyWithMeta(subject, metadata string, paths bool) (*object, string, error) {
	// A page edits the same features again and again, with the same metadata text: the
	// canonical form and the object are remembered for known objects, by a hash of the
	// texts (a Go map hashed the ~100 bytes one at a time in wasm) and compared in full.
	h := metaHitKey(subject, metadata)
	if hit := r.metaCache.get(h); hit != nil && textEqual(hit.metadata, metadata) && textEqual(hit.subject, subject) {
		return hit.obj, hit.meta, nil
	}
	obj, meta, err := r.identifyMeta(subject, metadata, paths)
	if err != nil {
		return nil, "", err
	}
	// Known objects (not pending) are remembered up to 4,096 of them; once full, the cache
	// stays as it is: refilling it on a larger working set cost more than it saved. A text
	// whose hash another holds is not remembered (that one stays).
	if obj.known && r.metaCache.n < 4096 {
		kept := obj.meta // the same string when equal (see identifyMeta)
		if !textEqual(meta, kept) {
			kept = strings.Clone(meta)
		}
		r.metaCache.add(h, metaHit{subject: obj.subject.Name, metadata: strings.Clone(metadata), obj: obj, meta: kept})
	}
	return obj, meta, nil
}

// metaHitKey is metaCache's key of an edit's subject and metadata text (never 0).
func metaHitKey(subject, metadata string) uint64 {
	return max(textHash(metadata)^textHash(subject)*0x9e3779b97f4a7c15, 1)
}

// identifyListed is identifyMeta for an object of a compact list (a state answer, a
// snapshot): one named by the text it was first seen with is found without sorting that
// text again. A mapcrdt peer names each object by its canonical text, which is what a
// replica that knows the object keeps (a canonical text is its own canonical form). Local
// edits do not look first: their texts are mostly in the caller's member order.
func (r *Replica) identifyListed(subject, metadata string, paths bool) (*object, error) {
	if r.dec.byMeta.n > 0 {
		if obj := r.dec.known(metadata); obj != nil && obj.subject.Name == subject {
			return obj, nil
		}
	}
	obj, _, err := r.identifyMeta(subject, metadata, paths)
	return obj, err
}

// listedObjects are the objects of a compact list ([subject, metadata], …), each found or
// made when an operation first names it (get): made with room for path writes when that
// operation is an update (objectFor). A catch-up's features are mostly updated, and a
// plain object's array of writes grew four times on the way to five keys.
type listedObjects struct {
	idents [][2]string // subject, metadata
	objs   []*object   // nil until named
}

func newListedObjects(idents [][2]string) listedObjects {
	return listedObjects{idents: idents, objs: make([]*object, len(idents))}
}

// get returns object i of the list (i in range), found or made for an operation of verb v.
func (l *listedObjects) get(r *Replica, i int, v Verb) (*object, error) {
	if o := l.objs[i]; o != nil {
		return o, nil
	}
	o, err := r.identifyListed(l.idents[i][0], l.idents[i][1], v == VerbUpdate)
	l.objs[i] = o
	return o, err
}

// rest finds or makes the objects no operation named, so that a list is checked whole,
// whatever its operations name.
func (l *listedObjects) rest(r *Replica) error {
	for i, o := range l.objs {
		if o == nil {
			if _, err := l.get(r, i, VerbUpsert); err != nil {
				return err
			}
		}
	}
	return nil
}

// identifyMeta is identifyWithMeta without the cache of metadata texts: for the objects of
// a compact list, each named once.
func (r *Replica) identifyMeta(subject, metadata string, paths bool) (*object, string, error) {
	sub := r.dec.subject(subject)
	if sub == nil {
		return nil, "", newError(ErrUnknownSubject, "unknown subject "+quote(subject))
	}
	metadata = orEmpty(metadata)
	if len(metadata) > r.opts.Limits.MaxMessageBytes {
		return nil, "", newError(ErrTooLarge, "metadata too large")
	}
	// A scratch text: the usual metadata (flat, strings) is sorted without the general parser.
	r.dec.canon.arena = r.dec.canon.arena[:0]
	var ms flatMembers
	meta, end := flatObjectMembers(metadata, 0, &r.dec.canon.arena, &ms)
	if cap(r.dec.canon.arena) > 1<<20 {
		r.dec.canon.arena = nil // meta keeps it while in use; a huge one is not kept after
	}
	var err error
	if end != len(metadata) {
		if meta, err = canonicalWith(&r.dec.canon, metadata, r.opts.Limits.MaxDepth); err != nil {
			return nil, "", err
		}
	}
	if !isObject(meta) {
		return nil, "", newError(ErrBadMetadata, "metadata must be an object, got "+quote(meta))
	}
	obj := r.dec.known(meta)
	if obj != nil && obj.subject == sub {
		// The text the object was first seen with: callers comparing it with obj.meta find
		// the same string, without reading it (WebAssembly compares strings byte by byte).
		return obj, obj.meta, nil
	}
	var ids [4]string
	if end == len(metadata) && len(sub.IDFields) <= len(ids) {
		// Flat metadata: the identity fields' values from the members its sorting read.
		for k, f := range sub.IDFields {
			ids[k] = ms.value(metadata, f)
		}
		r.dec.keyBuf, err = appendKeyOf(append(r.dec.keyBuf[:0], sub.Name...), sub, ids[:len(sub.IDFields)])
	} else {
		r.dec.keyBuf, err = appendObjectKey(r.dec.keyBuf[:0], sub, meta)
	}
	if err != nil {
		return nil, "", err
	}
	return r.objectFor(sub, r.dec.keyBuf, meta, paths), meta, nil
}

// metaHit is a remembered identifyWithMeta result.
type metaHit struct {
	subject, metadata string // as given
	obj               *object
	meta              string // canonical
}

func orEmpty(s string) string {
	if s == "" {
		return "{}"
	}
	return s
}

// canonicalValue validates a JSON value given by a caller, and copies it into a block of b
// (an operation's own value, see bulk) or, b nil, an allocation of its own.
func (r *Replica) canonicalValue(b *bulk, v string) (string, error) {
	if len(v) > r.opts.Limits.MaxMessageBytes {
		return "", newError(ErrTooLarge, "value of more than "+strconv.Itoa(r.opts.Limits.MaxMessageBytes)+" bytes")
	}
	if _, end := plainString(v, 0); end == len(v) {
		return b.clone(v), nil // a string of printable ASCII without escapes is its own canonical text
	}
	c, err := canonicalWith(&r.dec.value, v, r.opts.Limits.MaxDepth)
	if err != nil {
		return "", err
	}
	return b.clone(c), nil
}

// Get returns the visible value of an object (key "") or of one key path inside it, and
// whether it is present. metadata is JSON text naming the object.
func (r *Replica) Get(subject, metadata, key string) (string, bool, error) {
	o, err := r.identify(subject, metadata)
	defer r.dropPending()
	if err != nil {
		return "", false, err
	}
	if !o.exists() {
		return "", false, nil
	}
	if key == "" {
		v, ok := o.value()
		return v, ok, nil
	}
	path, err := parsePath(key, r.opts.Limits)
	if err != nil {
		return "", false, err
	}
	v, ok := o.valueAt(path)
	return v, ok, nil
}

// State returns every alive object as canonical JSON: an array of
// {"subject","metadata","value"} sorted by subject and identity, metadata holding the
// identity fields only. Two replicas holding the same operations return equal text. An
// object whose value is {} is left out: under the replay rule it cannot be told apart from
// an object never seen (alive, with an empty base).
func (r *Replica) State() string {
	b := []byte{'['}
	for _, o := range r.objects.sorted(func(o *object) bool { return o.exists() && o.alive() }) {
		v, _ := o.value()
		if v == "{}" {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, `{"subject":`...)
		b = appendString(b, o.subject.Name)
		b = append(b, `,"metadata":`...)
		b = appendIdentity(b, o)
		b = append(b, `,"value":`...)
		b = append(b, v...)
		b = append(b, '}')
	}
	return string(append(b, ']'))
}

// appendIdentity writes the identity fields of o as a canonical object.
func appendIdentity(b []byte, o *object) []byte {
	ids := strings.Split(o.key, "\x00")[1:]
	ms := make([]member, len(ids))
	for i, id := range ids {
		ms[i] = member{name: o.subject.IDFields[i], val: string(appendString(nil, id))}
	}
	return appendMembers(b, ms)
}

// ownSeqs is the last seq published per own origin (Replica.origins), the current origin's
// kept apart from the map: a flush numbers every operation it sends, and a map keyed by
// the peer id costs a hash of the id on each lookup (byte by byte in the wasm module).
type ownSeqs struct {
	origin string            // the current origin
	cur    uint64            // its seq
	has    bool              // it has one (a seq of 0 read from a snapshot is kept as such)
	others map[string]uint64 // the other origins'
}

func (s *ownSeqs) get(origin string) uint64 {
	if textEqual(origin, s.origin) {
		return s.cur
	}
	return s.others[origin]
}

func (s *ownSeqs) set(origin string, seq uint64) {
	if textEqual(origin, s.origin) {
		s.cur, s.has = seq, true
		return
	}
	if s.others == nil {
		s.others = map[string]uint64{}
	}
	s.others[origin] = seq
}

// setOrigin makes origin the current one.
func (s *ownSeqs) setOrigin(origin string) {
	if textEqual(origin, s.origin) {
		return
	}
	if s.has {
		if s.others == nil {
			s.others = map[string]uint64{}
		}
		s.others[s.origin] = s.cur
	}
	s.origin = origin
	s.cur, s.has = s.others[origin]
	delete(s.others, origin)
}

// vector returns every origin's seq (a new map).
func (s *ownSeqs) vector() VersionVector {
	v := make(VersionVector, len(s.others)+1)
	for p, n := range s.others { // not maps.Clone: it brings 4.5 KB of the runtime's into the .wasm
		v[p] = n
	}
	if s.has {
		v[s.origin] = s.cur
	}
	return v
}
