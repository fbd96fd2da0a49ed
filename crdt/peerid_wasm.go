//go:build js && wasm

package crdt

import "math/rand/v2"

// newPeerID returns a fresh random (version 4) UUID for a replica created without a peer
// id, from math/rand/v2's generator (ChaCha8, seeded by the runtime from the system's
// entropy): unique enough for an identity, which is not a secret. See peerid.go.
func newPeerID() string {
	const hex = "0123456789abcdef"
	var b [36]byte
	x, y := rand.Uint64(), rand.Uint64()
	j := 0
	for i := range b {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			b[i] = '-'
			continue
		}
		src := x
		if j >= 16 {
			src = y
		}
		n := src >> (4 * (j % 16)) & 15
		switch i {
		case 14:
			n = 4 // version 4
		case 19:
			n = 8 | n&3 // RFC 4122 variant
		}
		b[i] = hex[n]
		j++
	}
	return string(b[:])
}
