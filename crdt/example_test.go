package crdt_test

import (
	"bytes"
	"fmt"

	"github.com/mapcrdt/mapcrdt/crdt"
	"github.com/mapcrdt/mapcrdt/hlc"
)

// Two replicas exchange an edit: alice places a marker, bob receives it and renames it, and
// alice receives the rename. Messages are uMap's OperationMessages; any transport carries
// them. The changes Receive returns are what a map view must render.
func Example() {
	wall := hlc.NewManualClock(1727184449000) // both pages read the same wall clock here
	alice, err := crdt.NewReplica(crdt.Options{PeerID: "alice", Wall: wall})
	if err != nil {
		panic(err)
	}
	bob, err := crdt.NewReplica(crdt.Options{PeerID: "bob", Wall: wall})
	if err != nil {
		panic(err)
	}
	marker := `{"id":"UxNjQ","layerId":"L1","featureType":"marker"}`

	// alice places a marker; Flush hands the message to the transport.
	if _, err := alice.Upsert("feature", marker, `{"type":"Feature","geometry":{"type":"Point","coordinates":[2.2945,48.8584]},"properties":{"name":"Tour"}}`); err != nil {
		panic(err)
	}
	for _, msg := range alice.Flush() {
		fmt.Println("alice sends", string(msg))
		res, err := bob.Receive(msg)
		if err != nil {
			panic(err)
		}
		fmt.Println("bob renders", string(crdt.AppendChangesJSON(nil, res.Changes)))
	}

	// bob renames it, 5 ms later.
	wall.Advance(5)
	if _, err := bob.Update("feature", marker, "properties.name", `"Tour Eiffel"`); err != nil {
		panic(err)
	}
	for _, msg := range bob.Flush() {
		fmt.Println("bob sends", string(msg))
		res, err := alice.Receive(msg)
		if err != nil {
			panic(err)
		}
		fmt.Println("alice renders", string(crdt.AppendChangesJSON(nil, res.Changes)))
	}

	name, _, _ := alice.Get("feature", marker, "properties.name")
	fmt.Println("alice reads", name)
	fmt.Println("same state:", alice.State() == bob.State())
	// Output:
	// alice sends {"hlc":"1727184449000:0:alice","kind":"OperationMessage","metadata":{"featureType":"marker","id":"UxNjQ","layerId":"L1"},"sender":"alice","seq":1,"subject":"feature","value":{"geometry":{"coordinates":[2.2945,48.8584],"type":"Point"},"properties":{"name":"Tour"},"type":"Feature"},"verb":"upsert"}
	// bob renders [{"kind":"created","subject":"feature","metadata":{"featureType":"marker","id":"UxNjQ","layerId":"L1"},"value":{"geometry":{"coordinates":[2.2945,48.8584],"type":"Point"},"properties":{"name":"Tour"},"type":"Feature"},"hlc":"1727184449000:0:alice"}]
	// bob sends {"hlc":"1727184449005:0:bob","key":"properties.name","kind":"OperationMessage","metadata":{"featureType":"marker","id":"UxNjQ","layerId":"L1"},"sender":"bob","seq":1,"subject":"feature","value":"Tour Eiffel","verb":"update"}
	// alice renders [{"kind":"set","subject":"feature","metadata":{"featureType":"marker","id":"UxNjQ","layerId":"L1"},"key":"properties.name","value":"Tour Eiffel","hlc":"1727184449005:0:bob"}]
	// alice reads "Tour Eiffel"
	// same state: true
}

// A late joiner catches up: it asks a peer for what it lacks, and the peer's answer carries
// it. Had the joiner held operations the peer lacked, its reply would push them back.
func ExampleReplica_SyncRequest() {
	wall := hlc.NewManualClock(1727184449000)
	alice, _ := crdt.NewReplica(crdt.Options{PeerID: "alice", Wall: wall})
	for i, name := range []string{"one", "two", "three"} {
		meta := fmt.Sprintf(`{"id":"f%d","layerId":"L1"}`, i)
		if _, err := alice.Upsert("feature", meta, `{"type":"Feature","properties":{"name":"`+name+`"}}`); err != nil {
			panic(err)
		}
	}
	alice.Flush() // sent while bob was away

	bob, _ := crdt.NewReplica(crdt.Options{PeerID: "bob", Wall: wall})
	answer, err := alice.Receive(bob.SyncRequest("alice"))
	if err != nil {
		panic(err)
	}
	for _, msg := range answer.Replies {
		res, err := bob.Receive(msg)
		if err != nil {
			panic(err)
		}
		fmt.Println("bob renders", len(res.Changes), "changes and replies", len(res.Replies), "messages")
	}
	fmt.Println("same state:", alice.State() == bob.State(), "vector:", bob.Vector())
	// Output:
	// bob renders 3 changes and replies 0 messages
	// same state: true vector: map[alice:3]
}

// A page stores its replica (IndexedDB, a file) and resumes it after a reload: the state and
// the undo stack come back, and the next edits take a new origin (alice~…), so no seq is
// ever given twice even if the snapshot was older than what the page had sent.
func ExampleNewReplicaFromSnapshot() {
	wall := hlc.NewManualClock(1727184449000)
	alice, _ := crdt.NewReplica(crdt.Options{PeerID: "alice", Wall: wall})
	if _, err := alice.Update("map", `{}`, "properties.name", `"My map"`); err != nil {
		panic(err)
	}
	snap, err := alice.Snapshot()
	if err != nil {
		panic(err)
	}

	resumed, err := crdt.NewReplicaFromSnapshot(crdt.Options{Wall: wall}, snap)
	if err != nil {
		panic(err)
	}
	name, _, _ := resumed.Get("map", `{}`, "properties.name")
	fmt.Println(resumed.PeerID(), name, resumed.CanUndo())
	if _, err := resumed.Undo(); err != nil {
		panic(err)
	}
	_, present, _ := resumed.Get("map", `{}`, "properties.name")
	fmt.Println("after undo:", present)
	// The update was still in the outbox (never flushed): it and its undo leave as one
	// message, under the new origin.
	for _, msg := range resumed.Flush() {
		fmt.Println("sends", bytes.Contains(msg, []byte(`:alice~`)), bytes.Contains(msg, []byte(`"My map"`)))
	}
	// Output:
	// alice "My map" true
	// after undo: false
	// sends true false
}
