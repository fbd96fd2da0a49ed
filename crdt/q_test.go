package crdt

import "testing"

var qmsg = `{"hlc":"1727184449010:12:7d3c6d0e-55aa-4c1e-9b0e-3f1d2c4b5a69","key":"properties.name","kind":"OperationMessage","metadata":{"featureType":"marker","id":"f123","layerId":"606d26bd-230f-4d3e-a2a7-0c3caed71548"},"sender":"7d3c6d0e-55aa-4c1e-9b0e-3f1d2c4b5a69","seq":12,"subject":"feature","value":"v123-55","verb":"update"}`

func BenchmarkQParse(b *testing.B) {
	for i := 0; i < b.N; i++ {
		parseObject(qmsg, 72)
	}
}
