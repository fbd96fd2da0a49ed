// Package hlc is the Hybrid Logical Clock that orders every mapcrdt operation.
//
// # What it follows
//
// The clock is the one of Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent
// Snapshots in Globally Distributed Databases" (2014). A [Timestamp] is a triple
//
//	walltime : counter : peer
//
// where walltime is milliseconds since the Unix epoch, counter a logical counter that breaks
// ties inside one millisecond, and peer the id of the replica that made the timestamp. Its text
// form, `1727184449010:0:3f2a…`, is the one uMap's hlc.js writes, so operations travel between
// mapcrdt and uMap's own Journal unchanged.
//
// # Guarantees
//
//   - Total order. Timestamps compare by walltime as a number, then counter as a number, then
//     peer id bytewise ([Timestamp.Compare]). Two different replicas never produce equal
//     timestamps, because the peer id is part of the value. The serialized strings are never
//     compared: "9" sorts after "10" as text, which is exactly uMap's bug this package avoids.
//   - Monotonic. [Clock.Now] (send) returns a timestamp strictly greater than every timestamp
//     the clock has returned or received before, even when the wall clock steps backwards
//     (NTP correction, a laptop waking up): walltime then stays where it was and the counter
//     grows.
//   - Causal. [Clock.Update] (receive) moves the clock past the remote timestamp, so anything
//     stamped after receiving an operation sorts after that operation.
//   - Close to real time. A timestamp made once the wall clock has passed every walltime the
//     clock issued or received is the wall clock's time with counter 0; the counter grows
//     only within one millisecond, or while the clock runs ahead of its wall clock (after
//     a step back, or a remote timestamp ahead). Timestamps read as real dates.
//
// # Hazards and what the clock does about them
//
//   - A clock far ahead. A peer whose wall clock says the year 3000 would, under plain HLC,
//     drag every replica's clock there and win every last-writer-wins decision forever.
//     [Clock.Update] therefore refuses a remote timestamp more than MaxDrift (default 60 s,
//     [DefaultMaxDrift]) ahead of the local wall clock with [ErrClockDrift]; the caller must
//     not apply the operation that carried it. A smaller drift is accepted and absorbed: the
//     local clock runs ahead of its wall clock until real time catches up.
//   - Counter overflow. The counter is bounded by [MaxCounter] (uMap's JavaScript numbers are
//     exact only up to 2^53, and a bounded counter keeps the text short). Should a burst
//     exhaust it inside one millisecond, the clock carries into walltime (walltime+1,
//     counter 0): the result is still strictly greater and the order stays total, at the price
//     of running one millisecond ahead of the wall clock. A remote timestamp with a counter
//     above MaxCounter is malformed ([ErrBadTimestamp]).
//   - Walltime range. Walltime must be in [0, [MaxWall]] (year ~285,000, the largest integer
//     JavaScript holds exactly); anything else is malformed. The clock stays in it while
//     the drift guard is on and the wall clock is a real one; with the guard off, a remote
//     timestamp at MaxWall and MaxCounter is followed by MaxWall+1, which no peer parses.
//
// # Not promised
//
// HLC orders events; it does not measure time. Two concurrent edits are ordered by their
// timestamps, which follow the wall clocks of their peers: with clocks 30 s apart, the peer
// ahead wins ties it "should" have lost. That is inherent to last-writer-wins and bounded by
// MaxDrift.
//
// The wall clock is injected through the one-method [WallClock] interface: [SystemClock] in
// production, the wasm module the time each call brings (the glue's `now` option, Date.now()
// by default), and tests use [ManualClock].
package hlc
