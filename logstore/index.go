package logstore

import "sort"

// loc is where an entry's encoded bytes lie: segment, offset, length.
type loc struct {
	seg uint64
	off int64
	n   int
}

// run is a stretch of consecutive indexes, first .. first+len(locs)-1.
type run struct {
	first uint64
	locs  []loc
}

func (r run) last() uint64 { return r.first + uint64(len(r.locs)) - 1 }

// index maps one group's raft indexes to their places in the segments. A
// raft log is nearly always one run; a follower that installed a snapshot
// far ahead of its log has two (the old tail stays until raft compacts it).
// Runs are sorted, never empty, and never overlap.
type index struct {
	runs []run
}

func (x *index) first() uint64 {
	if len(x.runs) == 0 {
		return 0
	}
	return x.runs[0].first
}

func (x *index) last() uint64 {
	if len(x.runs) == 0 {
		return 0
	}
	return x.runs[len(x.runs)-1].last()
}

func (x *index) get(i uint64) (loc, bool) {
	k := sort.Search(len(x.runs), func(k int) bool { return x.runs[k].last() >= i })
	if k == len(x.runs) || x.runs[k].first > i {
		return loc{}, false
	}
	return x.runs[k].locs[i-x.runs[k].first], true
}

// remove drops indexes lo..hi (inclusive) and calls gone for each location
// dropped, so the caller can keep its per-segment accounting.
func (x *index) remove(lo, hi uint64, gone func(loc)) {
	if lo > hi {
		return
	}
	out := x.runs[:0:0]
	for _, r := range x.runs {
		if r.last() < lo || r.first > hi {
			out = append(out, r)
			continue
		}
		// The part before lo and the part after hi survive.
		cutFrom := uint64(0)
		if lo > r.first {
			cutFrom = lo - r.first
		}
		cutTo := uint64(len(r.locs)) // exclusive
		if hi < r.last() {
			cutTo = hi - r.first + 1
		}
		for _, l := range r.locs[cutFrom:cutTo] {
			gone(l)
		}
		if cutFrom > 0 {
			out = append(out, run{first: r.first, locs: r.locs[:cutFrom:cutFrom]})
		}
		if cutTo < uint64(len(r.locs)) {
			out = append(out, run{first: r.first + cutTo, locs: compact(r.locs[cutTo:])})
		}
	}
	x.runs = out
}

// compact copies a slice cut from the front of a much larger array, so a
// log truncated at the front again and again does not pin every location
// it ever held.
func compact(l []loc) []loc {
	if cap(l) <= 2*len(l)+64 {
		return l
	}
	return append([]loc(nil), l...)
}

// put stores locations for first .. first+len(locs)-1, replacing whatever
// those indexes held (remove them first for the accounting).
func (x *index) put(first uint64, locs []loc) {
	if len(locs) == 0 {
		return
	}
	// The common case: the next entries of the log.
	if n := len(x.runs); n > 0 && x.runs[n-1].last()+1 == first {
		x.runs[n-1].locs = append(x.runs[n-1].locs, locs...)
		return
	}
	nr := run{first: first, locs: append([]loc(nil), locs...)}
	k := sort.Search(len(x.runs), func(k int) bool { return x.runs[k].first > first })
	x.runs = append(x.runs, run{})
	copy(x.runs[k+1:], x.runs[k:])
	x.runs[k] = nr
	// Join neighbours that now touch.
	merged := x.runs[:1]
	for _, r := range x.runs[1:] {
		prev := &merged[len(merged)-1]
		if prev.last()+1 == r.first {
			prev.locs = append(prev.locs[:len(prev.locs):len(prev.locs)], r.locs...)
			continue
		}
		merged = append(merged, r)
	}
	x.runs = merged
}

// each calls fn for every stored index in order.
func (x *index) each(fn func(i uint64, l loc)) {
	for _, r := range x.runs {
		for k, l := range r.locs {
			fn(r.first+uint64(k), l)
		}
	}
}
