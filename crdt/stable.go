package crdt

// sortStable sorts s by cmp and keeps equal elements in their order, as
// slices.SortStableFunc (a stable sort has one result): insertion-sorted runs, then merged
// bottom up through a buffer. slices.SortStableFunc sorts in place by rotations, ~9 KB of
// wasm for each element shape the module sorts with it; this is a fraction of that. Where
// no two keys are equal (clocks of the log's operations, objects' keys) it also stands in
// for slices.SortFunc, which would link pdqsort for the shape: any sort gives that order.
// So for slices.Sort of strings too (two equal strings cannot be told apart).
func sortStable[T any](s []T, cmp func(a, b T) int) {
	const run = 16
	n := len(s)
	for lo := 0; lo < n; lo += run {
		hi := min(lo+run, n)
		for i := lo + 1; i < hi; i++ {
			for j := i; j > lo && cmp(s[j], s[j-1]) < 0; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
	if n <= run {
		return
	}
	src, dst := s, make([]T, n)
	for width := run; width < n; width *= 2 {
		for lo := 0; lo < n; lo += 2 * width {
			mid, hi := min(lo+width, n), min(lo+2*width, n)
			i, j, k := lo, mid, lo
			for i < mid && j < hi {
				if cmp(src[j], src[i]) < 0 { // the left one first on a tie: stable
					dst[k] = src[j]
					j++
				} else {
					dst[k] = src[i]
					i++
				}
				k++
			}
			k += copy(dst[k:], src[i:mid])
			copy(dst[k:], src[j:hi])
		}
		src, dst = dst, src
	}
	if &src[0] != &s[0] {
		copy(s, src)
	}
}
