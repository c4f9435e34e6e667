package scrub

import (
	"sync/atomic"

	"github.com/cdpvault/cdpvault/redact"
)

// Holder is a Source whose index can be swapped while sessions run (a
// secret was set, deleted or rotated). Set destroys the index it replaces;
// scrubs in progress on it finish first (Index.Destroy waits for them),
// later ones use the new index. IO.read streams begun on the old index fail
// closed on their next chunk.
type Holder struct {
	p atomic.Pointer[redact.Index]
}

// NewHolder returns a holder of ix (which may be nil until Set).
func NewHolder(ix *redact.Index) *Holder {
	h := &Holder{}
	h.p.Store(ix)
	return h
}

// Index returns the current index.
func (h *Holder) Index() *redact.Index { return h.p.Load() }

// Set installs ix and destroys the previous index.
func (h *Holder) Set(ix *redact.Index) {
	if old := h.p.Swap(ix); old != nil && old != ix {
		old.Destroy()
	}
}

// Close destroys the current index; Index returns nil afterwards, so
// scrubbing fails closed.
func (h *Holder) Close() { h.Set(nil) }
