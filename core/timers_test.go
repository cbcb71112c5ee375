package core_test

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"goloop/core"
)

// tm is a timer as the tests see it: its deadline and the order in which it
// was scheduled.
type tm struct {
	When float64
	Seq  int
}

// byDeadline sorts timers as the heap must pop them: by deadline, then in
// scheduling order.
func byDeadline(ts []tm) []tm {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b tm) int {
		if c := cmp.Compare(a.When, b.When); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return out
}

// drain pops every timer, checking that the head was the one popped.
func drain(t *testing.T, h *core.Heap[tm]) []tm {
	t.Helper()
	var out []tm
	for h.Len() > 0 {
		when := h.HeadWhen()
		got := h.Pop()
		if got.When != when {
			t.Fatalf("head said %v but Pop returned %v", when, got)
		}
		out = append(out, got)
	}
	return out
}

// randomTimers draws deadlines from a few values so that ties are common.
func randomTimers(rng *rand.Rand, n, distinct int) []tm {
	ts := make([]tm, n)
	for i := range ts {
		ts[i] = tm{When: float64(rng.IntN(distinct)) / 4, Seq: i}
	}
	return ts
}

func TestTimerHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 3, 7, 64, 1000} {
		var h core.Heap[tm]
		ts := randomTimers(rng, n, 1+n/3)
		for _, x := range ts {
			h.Push(x.When, x)
			if err := h.Check(); err != nil {
				t.Fatalf("n=%d: after push: %v", n, err)
			}
		}
		if diff := gocmp.Diff(byDeadline(ts), drain(t, &h)); diff != "" {
			t.Errorf("n=%d: pop order (-want +got):\n%s", n, diff)
		}
	}
}

func TestTimerHeapEqualTimesInSchedulingOrder(t *testing.T) {
	var h core.Heap[tm]
	var ts []tm
	for i := range 50 {
		ts = append(ts, tm{When: 1.5, Seq: i})
		h.Push(1.5, ts[i])
	}
	if diff := gocmp.Diff(ts, drain(t, &h)); diff != "" {
		t.Errorf("equal deadlines must pop in scheduling order (-want +got):\n%s", diff)
	}
}

func TestTimerHeapInterleaved(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h core.Heap[tm]
	var model []tm
	for i := range 5000 {
		if h.Len() == 0 || rng.IntN(3) > 0 {
			x := tm{When: float64(rng.IntN(40)), Seq: i}
			h.Push(x.When, x)
			model = append(model, x)
		} else {
			model = byDeadline(model)
			got := h.Pop()
			if got != model[0] {
				t.Fatalf("step %d: Pop = %v, want %v", i, got, model[0])
			}
			model = model[1:]
		}
	}
	if diff := gocmp.Diff(byDeadline(model), drain(t, &h)); diff != "" {
		t.Errorf("final drain (-want +got):\n%s", diff)
	}
}

func TestTimerHeapPopClearsSlot(t *testing.T) {
	var h core.Heap[*int]
	for i := range 4 {
		h.Push(float64(i), &i)
	}
	h.Pop()
	h.Pop()
	for i, p := range h.Spare() {
		if p != nil {
			t.Errorf("spare slot %d holds %v after pop; it must be nil for the GC", i, p)
		}
	}
}

// TestTimerHeapFilter keeps random subsets of random heaps and checks the
// result both as a heap and against a sort of the kept timers.
func TestTimerHeapFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 300 {
		n := rng.IntN(300)
		ts := randomTimers(rng, n, 1+rng.IntN(50))
		var h core.Heap[tm]
		for _, x := range ts {
			h.Push(x.When, x)
		}
		// Pop a few first, so filter works on a heap, not on a sorted array.
		popped := min(rng.IntN(5), n)
		for range popped {
			h.Pop()
		}
		rest := byDeadline(ts)[popped:]
		var keep []tm
		var drop map[int]bool
		switch round % 10 {
		case 0: // keep all
			drop = map[int]bool{}
		case 1: // keep none
			drop = map[int]bool{}
			for _, x := range rest {
				drop[x.Seq] = true
			}
		default:
			drop = map[int]bool{}
			for _, x := range rest {
				if rng.IntN(100) < round%100 {
					drop[x.Seq] = true
				}
			}
		}
		for _, x := range rest {
			if !drop[x.Seq] {
				keep = append(keep, x)
			}
		}
		calls := 0
		h.Filter(func(x tm) bool { calls++; return !drop[x.Seq] })
		if calls != len(rest) {
			t.Fatalf("round %d: keep called %d times for %d timers", round, calls, len(rest))
		}
		if err := h.Check(); err != nil {
			t.Fatalf("round %d: after filter: %v", round, err)
		}
		if h.Len() != len(keep) {
			t.Fatalf("round %d: Len = %d after filter, want %d", round, h.Len(), len(keep))
		}
		if diff := gocmp.Diff(keep, drain(t, &h)); diff != "" {
			t.Fatalf("round %d: pop order after filter (-want +got):\n%s", round, diff)
		}
	}
}

func TestTimerHeapFilterClearsDropped(t *testing.T) {
	var h core.Heap[*int]
	vals := make([]int, 10)
	for i := range vals {
		vals[i] = i
		h.Push(float64(i), &vals[i])
	}
	h.Filter(func(p *int) bool { return *p%3 == 0 })
	if h.Len() != 4 {
		t.Fatalf("Len = %d, want 4", h.Len())
	}
	for i, p := range h.Spare() {
		if p != nil {
			t.Errorf("spare slot %d holds %d after filter; it must be nil for the GC", i, *p)
		}
	}
}
