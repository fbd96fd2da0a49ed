package crdt

// A long call — a catch-up's decoding and applying, an answer's encoding — passes a gcPoint
// every gcEvery operations. Natively gcPoint does nothing. In js/wasm (gcpoint_wasm.go) the
// garbage collector has no thread of its own: a collection that starts inside a call stays
// in its mark phase, every pointer write paying the write barrier and the marking left to
// allocation's assists, until the call returns to JavaScript. There gcPoint finishes such a
// collection at once. Measured on the benchmark's catch-up of 10,000 operations (W2): a
// collection inside it cost 14–18 ms against 8 without one; with the points, 11–14.
//
// A variable so that the tests can count the points a call passes.
var gcPoint = finishMark

// gcEvery is how many operations a long loop handles between two gcPoints (about 0.2 ms of
// work in wasm).
const gcEvery = 256
