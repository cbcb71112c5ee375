package core_test

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"goloop/core"
)

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func popAll(r *core.Ring[int]) []int {
	var out []int
	for r.Len() > 0 {
		out = append(out, r.Pop())
	}
	return out
}

func TestReadyEmpty(t *testing.T) {
	var r core.Ring[int]
	if r.Len() != 0 || r.Cap() != 0 || r.Items() != nil {
		t.Fatalf("zero ring: len %d cap %d items %v, want all empty", r.Len(), r.Cap(), r.Items())
	}
}

func TestReadyPushPopOrder(t *testing.T) {
	var r core.Ring[int]
	for i := range 10 {
		r.Push(i)
	}
	if r.Len() != 10 {
		t.Fatalf("Len = %d, want 10", r.Len())
	}
	if a, b := r.Segments(); !cmp.Equal(seq(0, 10), a) || b != nil {
		t.Errorf("Segments of an unwrapped ring = %v, %v; want %v, nil", a, b, seq(0, 10))
	}
	if diff := cmp.Diff(seq(0, 10), popAll(&r)); diff != "" {
		t.Errorf("pop order (-want +got):\n%s", diff)
	}
}

func TestReadyGrowKeepsOrder(t *testing.T) {
	var r core.Ring[int]
	r.Push(0)
	if r.Cap() != 64 {
		t.Fatalf("first buffer holds %d, want 64", r.Cap())
	}
	for i := 1; i < 1000; i++ {
		r.Push(i)
	}
	if r.Cap() != 1024 {
		t.Errorf("after 1000 pushes the buffer holds %d, want 1024 (doubling)", r.Cap())
	}
	if diff := cmp.Diff(seq(0, 1000), popAll(&r)); diff != "" {
		t.Errorf("pop order (-want +got):\n%s", diff)
	}
	if r.Cap() != 1024 {
		t.Errorf("the buffer shrank to %d; it should never shrink", r.Cap())
	}
}

// TestReadyWrapThenGrow grows the ring while its contents wrap around the end
// of the buffer, the one case where grow has to unwrap them.
func TestReadyWrapThenGrow(t *testing.T) {
	var r core.Ring[int]
	for i := range 60 {
		r.Push(i)
	}
	for range 50 {
		r.Pop()
	}
	for i := 60; i < 114; i++ { // 64 items, the last 50 wrapped to the front
		r.Push(i)
	}
	if r.Cap() != 64 || r.Head() != 50 {
		t.Fatalf("cap %d head %d, want a full wrapped ring of 64 at 50", r.Cap(), r.Head())
	}
	if diff := cmp.Diff(seq(50, 114), r.Items()); diff != "" {
		t.Errorf("segments of a wrapped ring (-want +got):\n%s", diff)
	}
	a, b := r.Segments()
	if diff := cmp.Diff([][]int{seq(50, 64), seq(64, 114)}, [][]int{a, b}); diff != "" {
		t.Errorf("the two runs of a wrapped ring (-want +got):\n%s", diff)
	}
	r.Push(114)
	if r.Cap() != 128 || r.Head() != 0 {
		t.Errorf("after grow: cap %d head %d, want 128 and 0", r.Cap(), r.Head())
	}
	if diff := cmp.Diff(seq(50, 115), popAll(&r)); diff != "" {
		t.Errorf("pop order across wrap and grow (-want +got):\n%s", diff)
	}
}

func TestReadyPopClearsSlot(t *testing.T) {
	var r core.Ring[*int]
	for i := range 3 {
		r.Push(&i)
	}
	r.Pop()
	r.Pop()
	for i, p := range r.Slots() {
		if (p != nil) != (i == 2) {
			t.Errorf("slot %d = %v after popping two of three; a popped slot must be nil for the GC", i, p)
		}
	}
}

// TestReadyRandomAgainstSlice checks the ring against a plain slice over a
// random mix of pushes (at either end) and pops.
func TestReadyRandomAgainstSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r core.Ring[int]
	var model []int
	next := 0
	for step := range 20000 {
		if x := rng.IntN(100); len(model) == 0 || x < 50 {
			r.Push(next)
			model = append(model, next)
			next++
		} else if x < 55 {
			r.PushFront(next)
			model = append([]int{next}, model...)
			next++
		} else {
			got, want := r.Pop(), model[0]
			model = model[1:]
			if got != want {
				t.Fatalf("step %d: Pop = %d, want %d", step, got, want)
			}
		}
		if r.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, want %d", step, r.Len(), len(model))
		}
		if step%997 == 0 {
			if diff := cmp.Diff(model, r.Items(), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("step %d: segments (-want +got):\n%s", step, diff)
			}
		}
	}
}
