//go:build !(js && wasm)

package crdt

import "github.com/google/uuid"

// newPeerID returns a fresh random (version 4) UUID for a replica created without a peer
// id. Natively it comes from github.com/google/uuid; the wasm build has a twin
// (peerid_wasm.go) because that package links fmt, reflect and crypto/rand's FIPS module,
// ~185 KB gzip of a 1 MB budget, for one call.
func newPeerID() string { return uuid.NewString() }
