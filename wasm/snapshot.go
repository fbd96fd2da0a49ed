package main

import "github.com/mapcrdt/mapcrdt/crdt"

// snapshot and fromSnapshot wrap the engine's snapshot export and import (the bytes are the
// engine's JSON snapshot format, crdt/snapshot.go; the glue hands them out as a Uint8Array).

func snapshot(r *crdt.Replica) ([]byte, error) { return r.Snapshot() }

func fromSnapshot(opts crdt.Options, snap []byte) (*crdt.Replica, error) {
	return crdt.NewReplicaFromSnapshot(opts, snap)
}
