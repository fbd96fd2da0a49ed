package hlc_test

import (
	"errors"
	"fmt"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// Timestamps compare as numbers, not as text: counter 9 comes before counter 10.
func ExampleParse() {
	a, err := hlc.Parse("1727193549:9:id1")
	if err != nil {
		panic(err)
	}
	b := hlc.MustParse("1727193549:10:id1")
	fmt.Println(a.Wall, a.Counter, a.Peer)
	fmt.Println(a.Compare(b), b.Compare(a), a.Compare(a), a.Less(b))

	_, err = hlc.Parse("1727193549:09:id1")
	fmt.Println(errors.Is(err, hlc.ErrBadTimestamp))
	fmt.Println(err)
	// Output:
	// 1727193549 9 id1
	// -1 1 0 true
	// true
	// hlc: bad timestamp "1727193549:09:id1": counter is not an integer in [0, 2^31)
}

// Two peers exchange operations. Alice's wall clock is 2 s ahead of Bob's; Bob's clock still
// stamps his reply after Alice's operation, and a peer too far ahead is refused.
func Example() {
	aliceWall := hlc.NewManualClock(1727184451000)
	bobWall := hlc.NewManualClock(1727184449000)
	alice := hlc.New("alice", aliceWall)
	bob := hlc.New("bob", bobWall)

	op1 := alice.Now() // Alice edits and sends
	fmt.Println("alice sends   ", op1)
	op1b := alice.Now() // again, in the same millisecond
	fmt.Println("alice sends   ", op1b)

	got, _ := bob.Update(op1b) // Bob receives: his clock jumps to Alice's time
	fmt.Println("bob receives  ", got)
	op2 := bob.Now() // Bob replies; his wall clock is still behind
	fmt.Println("bob sends     ", op2, op1b.Less(op2))

	aliceWall.Advance(5)
	got, _ = alice.Update(op2) // Alice's wall clock has moved on
	fmt.Println("alice receives", got)

	mallory := hlc.MustParse("32503680000000:0:mallory") // the year 3000
	_, err := bob.Update(mallory)
	fmt.Println(errors.Is(err, hlc.ErrClockDrift), bob.Last())
	// Output:
	// alice sends    1727184451000:0:alice
	// alice sends    1727184451000:1:alice
	// bob receives   1727184451000:2:bob
	// bob sends      1727184451000:3:bob true
	// alice receives 1727184451005:0:alice
	// true 1727184451000:3:bob
}
