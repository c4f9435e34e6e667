package redact

// Stream scrubs a sequence of chunks as one text: an occurrence split across
// chunk boundaries is still found. Write returns the part of the input that
// can no longer be part of an occurrence; the rest (at most the longest form
// plus a few bytes) is held until the next Write or Flush. A Stream is not
// safe for concurrent use; the Index it came from must outlive it.
type Stream struct {
	ix  *Index
	buf []byte
}

// NewStream starts a stream over ix.
func (ix *Index) NewStream() *Stream { return &Stream{ix: ix} }

// hold is how many trailing bytes may still start an occurrence that
// continues past the end of what was seen.
func (s *Stream) hold() int { return s.ix.maxLen + 16 }

// Write appends p to the stream and appends the scrubbed output that is
// final to dst. n counts the replacements in that output.
func (s *Stream) Write(dst, p []byte) (out []byte, n int, err error) {
	s.appendBuf(p)
	return s.drain(dst, false)
}

// Flush appends everything still held, scrubbed, to dst. The stream may be
// written to again afterwards (as a new text).
func (s *Stream) Flush(dst []byte) (out []byte, n int, err error) {
	return s.drain(dst, true)
}

// Close wipes what the stream holds.
func (s *Stream) Close() {
	clear(s.buf[:cap(s.buf)])
	s.buf = nil
}

func (s *Stream) appendBuf(p []byte) {
	if len(s.buf)+len(p) > cap(s.buf) {
		nb := make([]byte, len(s.buf), max(2*cap(s.buf), len(s.buf)+len(p), 4096))
		copy(nb, s.buf)
		clear(s.buf[:cap(s.buf)])
		s.buf = nb
	}
	s.buf = append(s.buf, p...)
}

func (s *Stream) drain(dst []byte, final bool) ([]byte, int, error) {
	ix := s.ix
	mp := getMatches()
	ix.mu.RLock()
	ms, err := ix.find(s.buf, *mp, 0)
	defer func() { ix.mu.RUnlock(); putMatches(mp, ms) }()
	if err != nil {
		return dst, 0, err
	}
	cut := len(s.buf)
	if !final {
		cut = len(s.buf) - s.hold()
		if cut <= 0 {
			return dst, 0, nil
		}
		for _, m := range ms {
			if m.s < cut && m.e > cut {
				cut = m.s
				break
			}
		}
	}
	n := 0
	for _, m := range ms {
		if m.e <= cut {
			n++
		}
	}
	dst = ix.emit(dst, s.buf, ms, cut)
	rest := copy(s.buf, s.buf[cut:])
	clear(s.buf[rest:])
	s.buf = s.buf[:rest]
	return dst, n, nil
}
