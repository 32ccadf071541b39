package outbox_test

import (
	"reflect"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestSeqRanges(t *testing.T) {
	for _, c := range []struct {
		seqs []int64
		want []outbox.SeqRange
	}{
		{nil, nil},
		{[]int64{5}, []outbox.SeqRange{{5, 5}}},
		{[]int64{3, 1, 2}, []outbox.SeqRange{{1, 3}}},
		{[]int64{1, 3, 5}, []outbox.SeqRange{{1, 1}, {3, 3}, {5, 5}}},
		{[]int64{10, 4, 11, 5, 6, 20, 12}, []outbox.SeqRange{{4, 6}, {10, 12}, {20, 20}}},
		{[]int64{7, 7, 8}, []outbox.SeqRange{{7, 8}}}, // a repeated Seq is one
	} {
		if got := outbox.SeqRanges(c.seqs); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SeqRanges(%v) = %v, want %v", c.seqs, got, c.want)
		}
	}
}

func TestLongRuns(t *testing.T) {
	ranges := []outbox.SeqRange{{1, 10}, {12, 12}, {20, 22}, {30, 49}, {60, 67}, {70, 71}}
	runs, rest := outbox.LongRuns(ranges, 8, 2)
	// Three ranges are long enough ({1,10}: 10, {30,49}: 20, {60,67}: 8);
	// the two longest are kept, in order, and the third's Seqs join the rest.
	wantRuns := []outbox.SeqRange{{1, 10}, {30, 49}}
	wantRest := []int64{12, 20, 21, 22, 70, 71, 60, 61, 62, 63, 64, 65, 66, 67}
	if !reflect.DeepEqual(runs, wantRuns) || !reflect.DeepEqual(rest, wantRest) {
		t.Errorf("LongRuns = %v, %v; want %v, %v", runs, rest, wantRuns, wantRest)
	}
	if runs, rest := outbox.LongRuns(nil, 8, 2); runs != nil || rest == nil || len(rest) != 0 {
		t.Errorf("LongRuns(nil) = %v, %#v; want no runs and an empty, non-nil rest", runs, rest)
	}
}
