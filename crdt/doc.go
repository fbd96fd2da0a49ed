// Package crdt is the engine of mapcrdt: an operation-based CRDT for collaborative web maps
// that speaks uMap's sync protocol. It knows nothing of transports or of JavaScript:
// operations go in and out as JSON bytes, and the same code runs in the browser (compiled to
// WebAssembly, see package wasm) and in a Go server (the demo relay holds a full replica).
//
// # The model
//
// A map is a set of objects — the map itself, its permissions, datalayers and their
// permissions, features — each named by a subject and identity fields of its metadata
// ([DefaultSubjects]: a feature is metadata.layerId + metadata.id; other fields such as
// featureType travel along). Every edit is an operation: update (one key path), upsert (the
// whole object), delete, or batch (several, atomically). Every operation carries a Hybrid
// Logical Clock (package hlc) — walltime:counter:peer — and, from a mapcrdt peer, a seq, the
// origin's own operation counter.
//
// # What converges: the replay rule
//
// The visible value of an object is what you get by taking its base value and applying, in
// clock order, every operation known for it: upsert replaces the whole object and makes it
// alive, delete makes it absent, update sets or unsets one path of an alive object (an update
// to an absent object changes nothing visible). The base value is what the page loaded from
// the server ([Replica.Seed], a write at the zero clock, never sent); an object never seen is
// alive with an empty base, so updates on features loaded from the server apply.
//
// The engine never replays: it keeps, per object, the newest whole-object write and the path
// writes newer than it that nothing newer covers (state.go). A write supersedes every older
// write to its path and to the paths below it; a newer write below a path survives an older
// write to the path (properties.name at t=7 stays after properties at t=5 arrives late).
// Because the kept writes are exactly the ones a replay would not overwrite, any delivery
// order, with any duplication, gives the same state; the tests check this against a naive
// replay (oracle_test.go) over thousands of random histories.
//
// Tie-break: clocks are totally ordered (walltime, counter, peer id bytewise), so two writes
// never tie — except the writes of one batch, which share its clock: there the later one in
// the batch's array wins. Two different operations carrying the same clock (a faulty peer)
// are not told apart: the first one a replica receives is kept.
//
// A local batch takes its clock at its first edit. A batch left open while remote
// operations arrive is sent in parts, one message each, in order: the edits made after a
// receive get a clock after it (with one clock for all, an edit made after seeing a peer's
// write of a place would be older than that write and lose to it everywhere). The parts
// are one undo step.
//
// # Paths
//
// A key is a dotted path (`properties._umap_options.color`); a literal dot or one of gjson's
// special characters is escaped with a backslash (`properties.a\.b`), as in uMap. Every part
// names an object member, numbers included: `geometry.coordinates.0` is the member "0" of an
// object, never an array element — arrays are values, written whole. A write below a value
// that is not an object first replaces that value with {}, and a write — set or unset —
// always leaves the objects above its path in place; this is what makes a write covered by a
// newer write at an ancestor path leave no trace, so the state needs no tombstones.
//
// Canonical JSON: values are stored compact with object members sorted by name (a
// duplicate name keeps its last value, as JSON.parse does); strings and numbers keep the
// text they arrived with. [Replica.State] is therefore byte-identical on two replicas that
// hold the same operations. An object whose value is {} is not listed: under the replay rule
// it is indistinguishable from one never seen.
//
// # What receive returns
//
// [Replica.Receive] returns the visible changes only — created, deleted, set (key "" = the
// whole object replaced) and unset — per object and top-most path touched, coalesced over
// every operation of the message, in the clock order of the first operation behind each (a
// datalayer appears before its features). Applying them in order to a rendered copy gives
// the state (property_test.go checks it).
//
// # Sync
//
// Every operation is stored once in a log sorted by clock. A version vector (origin peer →
// highest contiguous seq held) summarises a replica; the origin is the peer inside the hlc,
// not the envelope's sender. ListOperationsRequest carries the vector (and lastKnownHLC for
// uMap's plain Journal); the response carries what the requester lacks and the responder's
// vector; the requester, when it holds something the other lacks, pushes it back once (a
// response marked pushBack, answered with nothing), so one two-way exchange leaves both with
// the same state. A peer that joins asks one peer ([Replica.SyncRequest], sent on a
// JoinResponse); the peers already there see it in the next ListPeersResponse and each send
// it a probe ([Replica.ProbeRequest]): a request answered as a push-back, one way, so that
// edits it made offline and whose messages were lost reach every peer, without a second
// catch-up of the newcomer. A live operation whose seq is not the
// next one from its origin is applied and answered with a sync request (gap healing) — when
// it opens a new hole; above a hole already asked about, again only as the operations held
// above it double (a hole no peer can fill must not make every later operation ask for all
// those above it again). Local
// edits wait in an outbox until [Replica.Flush]; seqs are given at flush, so writes coalesced
// there (a marker drag: many geometry updates, one leaves) leave no gap. An edit
// superseded only by the edits of a batch still open leaves all the same: the batch may
// never be committed (a tab closed first).
//
// A response to a mapcrdt peer is paged: at most [Options.SyncPage] operations (10,000),
// and about half of [Limits.MaxMessageBytes], in clock order (a page of one operation as
// large as a local edit may be passes the limit: a PeerMessage is taken 4 KiB past it; past
// that too, with the vector of many origins, it goes with an empty vector and says "more",
// and the next page brings the vector). A replica holds no peer's operation larger than its
// own edits may be, whatever message brought it: an operation whose text, as appendOp
// writes it without a sender (its OperationMessage less kind and sender), is over
// Limits.MaxMessageBytes refuses the message holding it (too_large), whole. A local edit's
// whole message is within the limit, so peers of the same limits take each other's edits,
// and every operation held fits in a page of one (the compact form writes no more than
// that text, and the envelope is within the 4 KiB). Only a peer of larger limits makes
// such an operation; without the rule a replica took it in a page within the 4 KiB, and
// then could not page it to a late joiner of its own limits, which refused that page at
// every request. One held all the same (restored from the snapshot of a replica of larger
// limits, or of an earlier build) is withheld: left out of the pages, the vector lowered
// below it, its clock named in the page's "withheld"; the asker gets everything else
// (uMap's plain Journal, which takes any size, still gets it: its response is not paged).
// A request, and a compact response (for the pages pushed back), say their writer's
// limit ("maxMessageBytes"): the pages to it are made to the smaller of the two limits,
// and an operation over its limit is withheld from it the same way. Every page names all
// that is withheld from its asker, and is taken without its vector: what a withheld
// operation superseded is not sent, and the vector claims it (the asker would never take
// it, not even from a peer of its limits that holds it).
// A partial page says "more"
// (the clock of its last operation) and carries a vector lowered below every operation the
// requester lacks and does not get in it; the requester answers it with a request for the
// next page ("after": that clock), and pushes back after the last one. A page of a
// push-back is answered the same way, and its pages stay a push-back. uMap's plain Journal
// (a request without a vector) gets one response, as uMap's server sends it.
// An operation that reaches the responder between two pages with a clock older than the
// pages sent so far is left to the requester's next sync request (the vector sent does not
// claim it).
//
// A request carries the asker's session, a random token of the replica object (never in a
// snapshot), and a response echoes it ("for"), with its writer's own for a push-back to
// echo. A response echoing another session answers a vector its receiver may no longer
// hold — a request sent before a reload from an older snapshot — and adopting its vector
// would claim what the snapshot lacks: its operations are taken, its vector is not, and
// its last page is answered with a new request.
//
// # Compaction
//
// [Replica.Compact] drops operations whose every write is superseded; sync responses never
// carry them. A vector still covers their seqs: whatever superseded them is held and sent,
// and a requester adopts the responder's vector after a complete response. One that
// arrives again is a duplicate, as to a replica that never compacted: a seq the vector
// holds is not taken twice. Not while what
// superseded them is a local edit not yet published (the outbox, an open batch): it may
// never go out (a tab closed before the flush, a reload from an older snapshot), so an
// operation on an object such an edit writes is kept, and sent, superseded or not.
// Operations still visible are kept even below the saved horizon: dropping one would let an
// older write from an offline peer win where it must not. Responses to mapcrdt peers use a compact encoding
// (compact.go): peers and objects written once, walltimes as deltas. Operations and their
// values are allocated in shared blocks (bulk, compact.go); Compact moves the ones it keeps
// out of them, so that the memory of what it drops comes back.
//
// # Snapshots
//
// Saving: every local operation is dirty until saved. [Replica.SavedMessage] carries uMap's
// lastKnownHLC and the saver's version vector; a receiving replica counts as saved exactly
// its operations the saver held (an edit still on its way to the saver stays dirty, whatever
// its clock). A SavedMessage without a vector (uMap's plain Journal) saves everything up to
// its clock but the local edits not yet sent (the outbox, an open batch), which no saver
// can hold; [Replica.MarkSaved], the replica's own save, saves those too. Both refuse a
// clock further ahead than MaxDrift (ErrClockDrift): a horizon in the future would count
// as saved the edits made until then.
//
// [Replica.Snapshot] writes the whole replica (format "mapcrdt-snapshot", [SnapshotVersion]):
// every logged operation in the compact encoding (replaying them rebuilds the state and the
// per-path clocks), the seeded bases, the vector, the clock, the seq counter, the outbox,
// the undo and redo stacks (each within the history's budget: a newest step past it, a
// batch's, is left out with the steps before it), the saved horizon and the known peers. [NewReplicaFromSnapshot]
// (or [StartRestore] and [Restore.Step], a share of the work a call) continues exactly where
// it stopped; the clock never goes backwards. Other versions are
// refused with ErrSnapshotVersion, damage with ErrBadSnapshot. A snapshot may be older than
// what its replica had sent since (a reload from a copy saved before the last flush), so a
// restored replica stamps its next edits, and the operations still in its outbox, under a
// new origin ("peer~suffix"): no seq is ever given to two operations. A saved horizon
// naming a queued edit follows it to the new origin, so a saved edit stays saved.
//
// # Three-way merge
//
// [Merge] is for saves made without live sync (uMap's optimistic merge): two divergent
// versions of a datalayer against their common ancestor, features matched by id, geometry and
// each property path merged three-way, genuine conflicts returned as [Conflict] values (or
// resolved by a [MergePolicy]). Its doc comment lists the rules.
//
// # Undo
//
// Each local edit records the value each written path had before it. [Replica.Undo] reverts
// the newest step (an edit, a batch, a group, or edits within the capture interval) by
// emitting new operations with fresh clocks, so elsewhere an undo is just more edits. A place
// another peer has written since is left as that peer wrote it and reported as skipped —
// also when that work is there again because an undo put it back (bob wrote over alice's
// first edit, her second edit over bob's; undoing the second restores bob's value, and
// undoing the first then leaves it): an undo's write carries the clock of the peer's work
// it restored, local only, kept in snapshots. An update that replaced a value that is not
// an object on its way (geometry [1,2], by a write of geometry.type), or made objects that
// were not there, is undone by restoring that value (or its absence) whole — on an object
// whose whole value the engine knows (upserted or seeded); on one it knows only by the
// paths written, the path written is undone alone.
// An edit made with Edit.NoUndo (uMap's update(…, {undo: false}): a datalayer's
// _referenceVersion after a save) makes no step, joins none (in a batch: the batch's
// message, not its step) and leaves the redo stack as it is; an older step's undo or redo
// leaves a place it wrote since as written, reported as skipped, like a peer's write — a
// step that wrote the whole object (an upsert, a delete) is then skipped whole. It is an
// edit to save like any other ([Replica.Dirty] lists it).
// A group's or a capture interval's step that holds more than Limits.MaxMessageBytes of
// values to restore (the history's budget) takes no more edits: the next starts a step.
// Remote operations never enter the stacks. The values an undo restores may be far larger
// than what replaced them (a batch deleting a layer's features, undone): when they are more
// than a peer takes in one message (Limits.MaxMessageBytes, MaxBatch), the step goes out as
// several operations, in order, each with its own clock — still one step to redo. One
// value over the limit alone (an object written key by key) makes the undo fail with
// too_large, changing nothing.
//
// # Errors and limits
//
// Every input is validated; bad input gets an *[Error] with a stable code (invalid_json,
// unknown_verb, unknown_subject, bad_key, bad_hlc, clock_drift, too_large, too_deep, …) and
// a message quoting what was wrong, and changes nothing. [Limits] bound message size, depth,
// batch length and key length, with defaults that take a datalayer of thousands of features.
// A remote clock more than MaxDrift (60 s) ahead is refused (hlc package documentation).
//
// # Not promised
//
// Last writer wins by clock, not by intention: of two concurrent edits the one with the
// later clock stays, and a peer whose wall clock runs ahead (within MaxDrift) wins its ties.
// Arrays are replaced whole. A response to uMap's plain Journal is not paged: more than
// Limits.MaxBatch operations, or Limits.MaxMessageBytes, are more than the asker takes. The
// engine is not safe for concurrent use; its callers (the wasm bridge, the relay) serialize
// calls.
//
// The engine avoids fmt, encoding/json, reflect, gjson and sjson in non-test code: the wasm
// module must stay under 1 MB gzip, and gjson alone costs ~400 KB of it (README, "Guarantees and limits").
//
// In js/wasm the garbage collector has no thread of its own: a long call (a catch-up, an
// answer, a snapshot) ends, every 256 operations, a collection that started inside it
// (gcpoint.go), which would otherwise mark through the rest of the call behind the write
// barrier. Natively those points do nothing.
package crdt
