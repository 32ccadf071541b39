package outbox_test

import (
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewIDIsUUIDv7(t *testing.T) {
	t.Parallel()
	before := time.Now().Truncate(time.Millisecond)
	id := outbox.NewID()
	if !uuidV7.MatchString(id) {
		t.Fatalf("NewID() = %q; want a lowercase RFC 9562 version 7 UUID", id)
	}
	ts, ok := outbox.IDTime(id)
	if !ok || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Fatalf("IDTime(%q) = %v, %v; want about now", id, ts, ok)
	}
}

func TestNewIDSortsInCreationOrder(t *testing.T) {
	t.Parallel()
	// Many IDs per millisecond exercise the counter, and its overflow into
	// the next millisecond.
	ids := make([]string, 20000)
	for i := range ids {
		ids[i] = outbox.NewID()
	}
	if !slices.IsSorted(ids) {
		t.Fatal("IDs made one after another do not sort in creation order")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatal("NewID returned a duplicate")
	}
}

func TestNewIDIsUniqueAcrossGoroutines(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := make(map[string]bool)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := make([]string, 2000)
			for i := range local {
				local[i] = outbox.NewID()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate ID %s", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
}

func TestIDTimeRejectsOtherUUIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "not-a-uuid", "6ba7b810-9dad-41d1-80b4-00c04fd430c8" /* v4 */} {
		if _, ok := outbox.IDTime(id); ok {
			t.Errorf("IDTime(%q) reported a UUIDv7", id)
		}
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		outbox.NewID():                         true,
		"6BA7B810-9DAD-41D1-80B4-00C04FD430C8": true,
		"":                                     false,
		"6ba7b810-9dad-41d1-80b4-00c04fd430c":  false,
		"6ba7b810x9dad-41d1-80b4-00c04fd430c8": false,
		"6ba7b810-9dad-41d1-80b4-00c04fd430cg": false,
	} {
		if got := outbox.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
