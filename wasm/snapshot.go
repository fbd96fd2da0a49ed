package main

import "github.com/mapcrdt/mapcrdt/crdt"

// snapshot and fromSnapshot wrap the engine's snapshot export and import.
//
// TODO(wasm): crdt.Replica.Snapshot and crdt.NewReplicaFromSnapshot are not in the engine
// yet (see NEEDS.md); until they land both report "unsupported".

func snapshot(r *crdt.Replica) ([]byte, error) {
	if s, ok := any(r).(interface{ Snapshot() []byte }); ok {
		return s.Snapshot(), nil
	}
	return nil, &callError{code: "unsupported", msg: "this engine build has no snapshot"}
}

func fromSnapshot(opts crdt.Options, snap []byte) (*crdt.Replica, error) {
	return nil, &callError{code: "unsupported", msg: "this engine build cannot import a snapshot"}
}
