package redact

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sort"
	"sync"
	"unsafe"

	"github.com/awnumar/memguard"
)

const (
	// MinValueLen is the shortest secret value accepted. Shorter values
	// would shred ordinary text; the store refuses them too.
	MinValueLen = 8
	// MinFormLen is the shortest derived form kept (a line of a multi-line
	// value, a base64 core). Shorter forms are dropped.
	MinFormLen = 8
	// MaxValueLen bounds one value (64 KiB).
	MaxValueLen = 64 << 10
	// MaxNameLen bounds a secret name.
	MaxNameLen = 200

	winK     = 5  // bytes per fingerprinted window
	maxStep  = 64 // offsets per form in the table (6 bits)
	keyBytes = 32 // fingerprint key at the front of the locked buffer
)

var (
	// ErrDestroyed is returned when an index is used after Destroy.
	ErrDestroyed = errors.New("redact: index destroyed")
	// ErrTooShort is returned by Add for a value under MinValueLen bytes.
	ErrTooShort = fmt.Errorf("redact: value shorter than %d bytes", MinValueLen)
	// ErrTooLong is returned by Add for a value over MaxValueLen bytes.
	ErrTooLong = fmt.Errorf("redact: value longer than %d bytes", MaxValueLen)
	// ErrName is returned by Add for an unusable name.
	ErrName = errors.New("redact: invalid secret name")
	// ErrBuilt is returned when a Builder is used after Build or Destroy.
	ErrBuilt = errors.New("redact: builder already built or destroyed")
)

// Secret is one value to scrub. Value is read during Build only; the caller
// wipes it afterwards.
type Secret struct {
	Name  string
	Value []byte
}

// Build builds an index of secrets. See Builder.
func Build(secrets []Secret) (*Index, error) {
	b := NewBuilder()
	for _, s := range secrets {
		if err := b.Add(s.Name, s.Value); err != nil {
			b.Destroy()
			return nil, fmt.Errorf("add secret %q: %w", s.Name, err)
		}
	}
	return b.Build()
}

type secretRef struct {
	name   int // index into names
	off, n int // in the builder's locked buffer
}

// Builder collects secret values in one locked buffer until Build.
type Builder struct {
	vals    *memguard.LockedBuffer
	used    int
	names   []string
	nameIx  map[string]int
	secrets []secretRef
	done    bool
}

// NewBuilder returns an empty builder. It allocates nothing until Add.
func NewBuilder() *Builder { return &Builder{nameIx: map[string]int{}} }

func validName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '.' || c == '-' || c == ':' || c == '/':
		default:
			return false
		}
	}
	return true
}

// Add copies value into locked memory under name. The caller still owns
// value and wipes it. Names are [A-Za-z0-9_.:/-]{1,200} (they appear in
// the placeholder <<secret:NAME>>, which must stay valid in JSON, HTML and
// URLs); the same name may be added with several values.
func (b *Builder) Add(name string, value []byte) error {
	if b.done {
		return ErrBuilt
	}
	if !validName(name) {
		return ErrName
	}
	if len(value) < MinValueLen {
		return ErrTooShort
	}
	if len(value) > MaxValueLen {
		return ErrTooLong
	}
	if b.vals == nil || b.used+len(value) > b.vals.Size() {
		size := 4096
		if b.vals != nil {
			size = 2 * b.vals.Size()
		}
		for size < b.used+len(value) {
			size *= 2
		}
		nb, err := newLocked(size)
		if err != nil {
			return fmt.Errorf("redact: grow value buffer: %w", err)
		}
		if b.vals != nil {
			copy(nb.Bytes(), b.vals.Bytes()[:b.used])
			b.vals.Destroy()
		}
		b.vals = nb
	}
	copy(b.vals.Bytes()[b.used:], value)
	ni, ok := b.nameIx[name]
	if !ok {
		ni = len(b.names)
		b.names = append(b.names, name)
		b.nameIx[name] = ni
	}
	b.secrets = append(b.secrets, secretRef{name: ni, off: b.used, n: len(value)})
	b.used += len(value)
	return nil
}

// Destroy wipes the collected values. Safe to call more than once and
// after Build.
func (b *Builder) Destroy() {
	if b.vals != nil {
		b.vals.Destroy()
		b.vals = nil
	}
	b.done = true
	b.secrets = nil
}

// formMeta describes one form. It holds no plaintext: the bytes are in the
// index's locked buffer at off.
type formMeta struct {
	off   uint32
	n     uint32
	name  uint32
	flags uint8
}

const (
	fB64Left  = 1 << iota // a partial base64 character precedes the core
	fB64Right             // a partial base64 character follows the core
	fB64URL               // URL-safe alphabet
)

type entry struct {
	tag uint32
	fo  uint32 // form<<6 | offset
}

// Index scrubs every form of every secret it was built from. It is safe for
// concurrent use. The fingerprint tables live in ordinary memory and hold no
// plaintext; the forms and the fingerprint key live in one memguard
// LockedBuffer.
type Index struct {
	mu        sync.RWMutex
	buf       *memguard.LockedBuffer // [key][forms]
	destroyed bool

	names    []string
	nsecrets int
	forms    []formMeta
	minLen   int
	maxLen   int
	step     int

	long  table // 8-byte windows
	short table // 5-byte windows of forms too short for 8
}

// pending is a form found during Build.
type pending struct {
	sub   int // index into subs
	c     chain
	n     int
	flags uint8
}

type subValue struct {
	secret int
	off, n int
	whole  bool
}

// Build turns the collected values into an index and destroys the builder's
// copy of them.
func (b *Builder) Build() (*Index, error) {
	if b.done {
		return nil, ErrBuilt
	}
	defer b.Destroy()
	ix := &Index{names: b.names, nsecrets: len(b.secrets)}
	if len(b.secrets) == 0 {
		return ix, nil
	}
	vals := b.vals.Bytes()

	var subs []subValue
	for i, s := range b.secrets {
		subs = append(subs, subValue{secret: i, off: s.off, n: s.n, whole: true})
		v := vals[s.off : s.off+s.n]
		start := 0
		multi := false
		for j := 0; j <= len(v); j++ {
			if j < len(v) && v[j] != '\n' {
				continue
			}
			end := j
			if end > start && v[end-1] == '\r' {
				end--
			}
			if j < len(v) {
				multi = true
			}
			if multi && end-start >= MinFormLen {
				subs = append(subs, subValue{secret: i, off: s.off + start, n: end - start})
			}
			start = j + 1
		}
		if multi && subs[len(subs)-1].off == s.off && subs[len(subs)-1].n == s.n && !subs[len(subs)-1].whole {
			subs = subs[:len(subs)-1]
		}
	}

	g := &generator{}
	defer g.destroy()
	maxSub := 0
	for _, s := range subs {
		maxSub = max(maxSub, s.n)
	}
	if err := g.grow(maxSub*8 + 256); err != nil {
		return nil, err
	}

	// Pass 1: generate every form, keep the distinct ones.
	seed1, seed2 := maphash.MakeSeed(), maphash.MakeSeed()
	seen := make(map[[2]uint64]struct{}, len(subs)*64)
	forms := make([]pending, 0, len(subs)*64)
	total := 0
	minLen, maxLen := int(^uint(0)>>1), 0
	keep := func(si int, c chain, flags uint8, f []byte) {
		if len(f) < MinFormLen {
			return
		}
		key := [2]uint64{maphash.Bytes(seed1, f), maphash.Bytes(seed2, f)}
		if _, dup := seen[key]; dup {
			return
		}
		seen[key] = struct{}{}
		forms = append(forms, pending{sub: si, c: c, n: len(f), flags: flags})
		total += len(f)
		minLen = min(minLen, len(f))
		maxLen = max(maxLen, len(f))
	}
	add := func(si int, c chain, flags uint8) error {
		f, _, err := g.gen(vals[subs[si].off:subs[si].off+subs[si].n], c)
		if err != nil {
			return err
		}
		keep(si, c, flags, f)
		return nil
	}
	for si, s := range subs {
		src := vals[s.off : s.off+s.n]
		// each text form, then Chrome's escaping of it once and twice,
		// each step applied to the previous output
		for _, c := range textChains {
			// a chain with a step that changes nothing equals a shorter
			// chain of the list, generated on its own
			if !c.changes(src) {
				continue
			}
			f, reg, err := g.gen(src, c)
			if err != nil {
				return nil, err
			}
			keep(si, c, 0, f)
			n := c.len()
			for layer := 0; layer < 2 && n+layer < len(c); layer++ {
				if xJSONChrome.identity(f) {
					break
				}
				c[n+layer] = xJSONChrome
				if f, reg, err = g.extend(src, f, reg, c); err != nil {
					return nil, err
				}
				keep(si, c, 0, f)
			}
		}
		if !s.whole {
			continue
		}
		for _, c := range b64Chains {
			x := c[0]
			var flags uint8
			align := int(x - xB64Std0)
			if x >= xB64URL0 {
				align = int(x - xB64URL0)
				flags |= fB64URL
			}
			l, r := b64Edges(align, s.n)
			if l {
				flags |= fB64Left
			}
			if r {
				flags |= fB64Right
			}
			if err := add(si, c, flags); err != nil {
				return nil, err
			}
		}
	}
	if total+keyBytes > 1<<31 {
		return nil, errors.New("redact: index too large")
	}

	// Pass 2: pack the distinct forms into one locked buffer.
	buf, err := newLocked(keyBytes + total)
	if err != nil {
		return nil, fmt.Errorf("redact: allocate form buffer: %w", err)
	}
	mem := buf.Bytes()
	if _, err := rand.Read(mem[:keyBytes]); err != nil {
		buf.Destroy()
		return nil, fmt.Errorf("redact: fingerprint key: %w", err)
	}
	// the multipliers must be odd
	mem[8] |= 1
	mem[24] |= 1
	ix.buf = buf
	ix.forms = make([]formMeta, len(forms))
	off := keyBytes
	for i, p := range forms {
		sv := subs[p.sub]
		f, _, err := g.gen(vals[sv.off:sv.off+sv.n], p.c)
		if err != nil || len(f) != p.n {
			ix.Destroy()
			return nil, errors.New("redact: form generation is not deterministic")
		}
		copy(mem[off:], f)
		ix.forms[i] = formMeta{off: uint32(off), n: uint32(p.n), name: uint32(b.secrets[sv.secret].name), flags: p.flags}
		off += p.n
	}
	ix.minLen, ix.maxLen = minLen, maxLen
	ix.buildTables(mem)
	return ix, nil
}

func (ix *Index) keys(mem []byte) (k0, k1, k2, k3 uint64) {
	return binary.LittleEndian.Uint64(mem[0:]), binary.LittleEndian.Uint64(mem[8:]),
		binary.LittleEndian.Uint64(mem[16:]), binary.LittleEndian.Uint64(mem[24:])
}

// mix finishes a fingerprint for the bucket and tag bits.
func mix(x, k3 uint64) uint64 {
	x ^= x >> 32
	x *= k3
	x ^= x >> 29
	return x
}

const winMask = (uint64(1) << (8 * winK)) - 1

func loadWin(b []byte, i int) uint64 {
	if i+8 <= len(b) {
		return binary.LittleEndian.Uint64(b[i:]) & winMask
	}
	var w uint64
	for j := 0; j < winK; j++ {
		w |= uint64(b[i+j]) << (8 * j)
	}
	return w
}

// table is one fingerprint table: a bitmap filter on the top bits of the
// keyed product and buckets of (tag, form, offset) entries.
type table struct {
	bm      []uint64
	bmShift uint
	mask    uint64
	start   []uint32
	ents    []entry
}

func (tb *table) build(xs []uint64, fos []uint32, k3 uint64) {
	n := len(xs)
	bitsT := max(4, bits.Len(uint(n)))
	// at least 32 bits per entry, and small tables get a sparse 64 KiB
	// filter so that a sample rarely passes it by chance
	bitsB := min(max(bitsT+5, 19), 27)
	tb.mask = uint64(1)<<bitsT - 1
	tb.bmShift = uint(64 - bitsB)
	tb.bm = make([]uint64, max(1, (1<<bitsB)/64))
	tb.start = make([]uint32, (1<<bitsT)+1)
	for _, x := range xs {
		bi := x >> tb.bmShift
		tb.bm[bi>>6] |= 1 << (bi & 63)
		tb.start[mix(x, k3)&tb.mask+1]++
	}
	for i := 1; i < len(tb.start); i++ {
		tb.start[i] += tb.start[i-1]
	}
	tb.ents = make([]entry, n)
	fill := make([]uint32, 1<<bitsT)
	copy(fill, tb.start[:1<<bitsT])
	for i, x := range xs {
		h := mix(x, k3)
		bk := h & tb.mask
		tb.ents[fill[bk]] = entry{tag: uint32(h >> 32), fo: fos[i]}
		fill[bk]++
	}
}

// buildTables fingerprints, for every form, the windows at offsets
// 0..step-1: an 8-byte window where the form is long enough (table long),
// else a 5-byte one (table short, only forms a few bytes over the minimum).
func (ix *Index) buildTables(mem []byte) {
	k0, k1, k2, k3 := ix.keys(mem)
	ix.step = min(ix.minLen-winK+1, maxStep)
	n := len(ix.forms) * ix.step
	xl, fl := make([]uint64, 0, n), make([]uint32, 0, n)
	var xs []uint64
	var fs []uint32
	for fi, f := range ix.forms {
		form := mem[f.off : f.off+f.n]
		for o := 0; o < ix.step; o++ {
			fo := uint32(fi)<<6 | uint32(o)
			if o+8 <= len(form) {
				xl = append(xl, (binary.LittleEndian.Uint64(form[o:])^k0)*k1)
				fl = append(fl, fo)
			} else {
				xs = append(xs, (loadWin(form, o)^k2)*k1)
				fs = append(fs, fo)
			}
		}
	}
	ix.long.build(xl, fl, k3)
	ix.short.build(xs, fs, k3)
}

// generator produces forms in two locked scratch regions.
type generator struct {
	buf  *memguard.LockedBuffer
	half int
}

func (g *generator) grow(half int) error {
	if g.buf != nil {
		g.buf.Destroy()
	}
	b, err := newLocked(2 * half)
	if err != nil {
		g.buf = nil
		return fmt.Errorf("redact: scratch buffer: %w", err)
	}
	g.buf, g.half = b, half
	return nil
}

func (g *generator) destroy() {
	if g.buf != nil {
		g.buf.Destroy()
		g.buf = nil
	}
}

// gen applies chain c to src; the result lives in scratch region reg (or
// is src itself, reg -1) until the next call.
func (g *generator) gen(src []byte, c chain) (out []byte, reg int, err error) {
	for {
		mem := g.buf.Bytes()
		regions := [2][]byte{mem[:g.half], mem[g.half:]}
		in := src
		inRegion := -1
		overflow := false
		for _, x := range c {
			if x == xNone {
				break
			}
			if x.identity(in) {
				continue
			}
			r := 0
			if inRegion == 0 {
				r = 1
			}
			w := wbuf{b: regions[r]}
			x.apply(&w, in)
			if !w.ok() {
				overflow = true
				if err := g.grow(max(w.n, 2*g.half)); err != nil {
					return nil, -1, err
				}
				break
			}
			in, inRegion = w.bytes(), r
		}
		if !overflow {
			return in, inRegion, nil
		}
	}
}

// extend applies the last step of c to prev, the output of c without that
// step, found in region reg. When the scratch is too small it grows and c
// is generated from src again.
func (g *generator) extend(src, prev []byte, reg int, c chain) ([]byte, int, error) {
	x := c[c.len()-1]
	if x.identity(prev) {
		return prev, reg, nil
	}
	r := 0
	if reg == 0 {
		r = 1
	}
	mem := g.buf.Bytes()
	w := wbuf{b: mem[r*g.half : (r+1)*g.half]}
	x.apply(&w, prev)
	if !w.ok() {
		if err := g.grow(max(w.n, 2*g.half)); err != nil {
			return nil, -1, err
		}
		return g.gen(src, c)
	}
	return w.bytes(), r, nil
}

// Len is the number of secret values in the index.
func (ix *Index) Len() int { return ix.nsecrets }

// Forms is the number of distinct forms the index matches.
func (ix *Index) Forms() int { return len(ix.forms) }

// LockedBytes is the size of the index's locked buffer.
func (ix *Index) LockedBytes() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.buf == nil {
		return 0
	}
	return ix.buf.Size()
}

// Destroy wipes and frees the locked forms. Scrubbing afterwards fails with
// ErrDestroyed. It waits for scrubs in progress. Safe on nil and twice.
func (ix *Index) Destroy() {
	if ix == nil {
		return
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.buf != nil {
		ix.buf.Destroy()
		ix.buf = nil
	}
	ix.destroyed = true
}

type match struct {
	s, e int
	f    int // form index; for a group, the longest form
}

// find returns the merged, non-overlapping replacement spans in t, sorted.
// Spans never extend below lo.
func (ix *Index) find(t []byte, ms []match, lo int) ([]match, error) {
	if ix.destroyed {
		return ms, ErrDestroyed
	}
	if len(ix.forms) == 0 || len(t) < ix.minLen {
		return ms, nil
	}
	mem := ix.buf.Bytes()
	k0, k1, k2, k3 := ix.keys(mem)
	step := ix.step
	lbm, lsh := ix.long.bm, ix.long.bmShift
	sbm, ssh := ix.short.bm, ix.short.bmShift
	n := len(t)
	q := 0
	if n >= 8 {
		sc := scanner{base: unsafe.Pointer(unsafe.SliceData(t)), n: n, step: step, k0: k0, k1: k1, k2: k2,
			lp: unsafe.Pointer(unsafe.SliceData(lbm)), sp: unsafe.Pointer(unsafe.SliceData(sbm)), lsh: lsh & 63, ssh: ssh & 63}
		for {
			q = sc.next(q)
			if q+8 > n {
				break
			}
			w := binary.LittleEndian.Uint64(t[q:])
			x := (w ^ k0) * k1
			y := (w&winMask ^ k2) * k1
			bi, bj := x>>lsh, y>>ssh
			if lbm[bi>>6]&(1<<(bi&63)) != 0 {
				ms = ix.probe(&ix.long, t, q, mix(x, k3), mem, ms)
			}
			if sbm[bj>>6]&(1<<(bj&63)) != 0 {
				ms = ix.probe(&ix.short, t, q, mix(y, k3), mem, ms)
			}
			q += step
		}
	}
	for ; q+winK <= n; q += step {
		y := (loadWin(t, q) ^ k2) * k1
		bj := y >> ssh
		if sbm[bj>>6]&(1<<(bj&63)) != 0 {
			ms = ix.probe(&ix.short, t, q, mix(y, k3), mem, ms)
		}
	}
	if len(ms) == 0 {
		return ms, nil
	}
	return ix.resolve(t, ms, lo), nil
}

func (ix *Index) probe(tb *table, t []byte, q int, h uint64, mem []byte, ms []match) []match {
	bk := h & tb.mask
	tag := uint32(h >> 32)
	for _, e := range tb.ents[tb.start[bk]:tb.start[bk+1]] {
		if e.tag != tag {
			continue
		}
		fi := int(e.fo >> 6)
		c := q - int(e.fo&63)
		f := &ix.forms[fi]
		end := c + int(f.n)
		if c < 0 || end > len(t) {
			continue
		}
		if string(t[c:end]) == string(mem[f.off:f.off+f.n]) {
			ms = append(ms, match{s: c, e: end, f: fi})
		}
	}
	return ms
}

// scanner is the hot loop of find, kept small so that its state stays in
// registers.
type scanner struct {
	base     unsafe.Pointer
	n, step  int
	k0, k1   uint64
	k2       uint64
	lp, sp   unsafe.Pointer
	lsh, ssh uint
}

// next returns the first sample position >= q (in steps) whose window
// passes either bitmap filter, or a position with q+8 > n. The loads are
// in bounds: q+8 <= n, and the shifts leave fewer bits than each bitmap
// holds.
func (sc *scanner) next(q int) int {
	base, n, step := sc.base, sc.n, sc.step
	k0, k1, k2 := sc.k0, sc.k1, sc.k2
	lp, sp, lsh, ssh := sc.lp, sc.sp, sc.lsh&63, sc.ssh&63
	for ; q+8 <= n; q += step {
		w := *(*uint64)(unsafe.Add(base, q))
		bi := ((w ^ k0) * k1) >> lsh
		bj := ((w&winMask ^ k2) * k1) >> ssh
		hit := *(*uint64)(unsafe.Add(lp, (bi>>6)*8))>>(bi&63) | *(*uint64)(unsafe.Add(sp, (bj>>6)*8))>>(bj&63)
		if hit&1 != 0 {
			return q
		}
	}
	return q
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// inB64 reports whether c is a character of either base64 alphabet (a core
// without + / - _ is shared by both, and only one copy is kept).
func inB64(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return c == '+' || c == '/' || c == '-' || c == '_'
}

// fixStart moves a span's start so that it does not begin inside a JSON
// escape sequence at any nesting level: after a backslash, or among the hex
// digits of \uXXXX.
func fixStart(t []byte, s, lo int) int {
	for h := 0; h <= 3; h++ {
		u := s - h - 1
		if u-1 < lo {
			break
		}
		if h > 0 && !isHex(t[s-h]) {
			break
		}
		if t[u] == 'u' && t[u-1] == '\\' {
			s = u
			break
		}
	}
	for s > lo && t[s-1] == '\\' {
		s--
	}
	return s
}

// fixEnd moves a span's end so that no backslash inside the span is left
// escaping a character after it: the rest of the backslash run and the
// escaped character (with \uXXXX digits) join the span.
func fixEnd(t []byte, e, hi int) int {
	if e == 0 || t[e-1] != '\\' {
		return e
	}
	for e < hi && t[e] == '\\' {
		e++
	}
	if e < hi {
		c := t[e]
		e++
		if c == 'u' {
			for j := 0; j < 4 && e < hi && isHex(t[e]); j++ {
				e++
			}
		}
	}
	return e
}

func (ix *Index) resolve(t []byte, ms []match, lo int) []match {
	for i := range ms {
		m := &ms[i]
		f := &ix.forms[m.f]
		if f.flags&fB64Left != 0 && m.s > lo && inB64(t[m.s-1]) {
			m.s--
		}
		if f.flags&fB64Right != 0 && m.e < len(t) && inB64(t[m.e]) {
			m.e++
			for p := 0; p < 2 && m.e < len(t) && t[m.e] == '='; p++ {
				m.e++
			}
		}
		m.s = fixStart(t, m.s, lo)
		m.e = fixEnd(t, m.e, len(t))
	}
	if len(ms) > 1 {
		sorted := true
		for i := 1; i < len(ms); i++ {
			if ms[i].s < ms[i-1].s {
				sorted = false
				break
			}
		}
		if !sorted {
			sort.Slice(ms, func(i, j int) bool { return ms[i].s < ms[j].s })
		}
	}
	out := ms[:1]
	for _, m := range ms[1:] {
		g := &out[len(out)-1]
		if m.s < g.e {
			if m.e > g.e {
				g.e = m.e
			}
			if ix.forms[m.f].n > ix.forms[g.f].n {
				g.f = m.f
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// matchPool recycles match lists so that a scrub that finds nothing does
// not allocate.
var matchPool = sync.Pool{New: func() any { s := make([]match, 0, 16); return &s }}

func getMatches() *[]match { return matchPool.Get().(*[]match) }

func putMatches(p *[]match, ms []match) {
	if cap(ms) > 4096 {
		return
	}
	*p = ms[:0]
	matchPool.Put(p)
}

const (
	phOpen  = "<<secret:"
	phClose = ">>"
)

func (ix *Index) emit(dst, t []byte, ms []match, upto int) []byte {
	prev := 0
	for _, m := range ms {
		if m.e > upto {
			break
		}
		dst = append(dst, t[prev:m.s]...)
		dst = ix.placeholder(dst, m.f, false)
		prev = m.e
	}
	return append(dst, t[prev:upto]...)
}

func (ix *Index) placeholder(dst []byte, f int, quoted bool) []byte {
	if quoted {
		dst = append(dst, '"')
	}
	dst = append(dst, phOpen...)
	dst = append(dst, ix.names[ix.forms[f].name]...)
	dst = append(dst, phClose...)
	if quoted {
		dst = append(dst, '"')
	}
	return dst
}

// looksJSON reports whether t starts (after white space) like a JSON
// object, array or string, or is a valid JSON number or literal.
func looksJSON(t []byte) bool {
	for _, c := range t {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[', '"':
			return true
		}
		// a bare number or literal: decide by validating (this runs only
		// when something matched)
		return json.Valid(t)
	}
	return false
}

func isStructural(c byte) bool {
	switch c {
	case '{', '}', '[', ']', ',', ':', ' ', '\t', '\r', '\n', '"':
		return true
	}
	return false
}

// emitJSON replaces the spans in a JSON text so that it stays valid JSON
// at the top level: the JSON structure (quotes, brackets, commas, colons)
// inside a span is kept, the first string segment the span covers receives
// the placeholder and later ones become empty, and a number or literal the
// span touches is replaced as a whole by the placeholder as a string (or
// by "" once the placeholder was written). A span that lies inside one
// string, the common case, becomes just the placeholder.
func (ix *Index) emitJSON(dst, t []byte, ms []match) []byte {
	prev := 0
	inStr := false
	// advance tracks the string state from prev to p, jumping from quote
	// to quote; a quote inside a string ends it unless an odd run of
	// backslashes precedes it.
	advance := func(from, to int) {
		for i := from; i < to; {
			j := bytes.IndexByte(t[i:to], '"')
			if j < 0 {
				// an escape that starts before to may end after it;
				// fixStart/fixEnd keep spans off escapes, so this is
				// only a run of backslashes at to: nothing to track
				return
			}
			q := i + j
			if inStr {
				bs := 0
				for k := q - 1; k >= from && t[k] == '\\'; k-- {
					bs++
				}
				if bs%2 == 0 {
					inStr = false
				}
			} else {
				inStr = true
			}
			i = q + 1
		}
	}
	for _, m := range ms {
		s, e := m.s, m.e
		if s < prev {
			s = prev
		}
		advance(prev, s)
		if !inStr {
			for s > prev && !isStructural(t[s-1]) && t[s-1] != '\\' {
				s--
			}
		}
		dst = append(dst, t[prev:s]...)
		done := false
		p := s
		for p < e {
			if inStr {
				// look for the closing quote within the span only
				q := p
				for q < e && t[q] != '"' {
					if t[q] == '\\' {
						q++
					}
					q++
				}
				if !done {
					dst = ix.placeholder(dst, m.f, false)
					done = true
				}
				if q >= e {
					p = e
					break
				}
				// the closing quote lies inside the span: keep it
				dst = append(dst, '"')
				inStr = false
				p = q + 1
				continue
			}
			c := t[p]
			switch {
			case c == '"':
				dst = append(dst, '"')
				inStr = true
				p++
			case isStructural(c):
				dst = append(dst, c)
				p++
			default:
				r := p
				for r < len(t) && !isStructural(t[r]) {
					r++
				}
				if !done {
					dst = ix.placeholder(dst, m.f, true)
					done = true
				} else {
					dst = append(dst, '"', '"')
				}
				p = r
				e = max(e, r)
			}
		}
		prev = p
	}
	return append(dst, t[prev:]...)
}

// Scrub appends src to dst with every form of every secret replaced by
// <<secret:NAME>> and returns the result and the number of replacements.
// Overlapping occurrences (a secret inside another, self-overlapping
// values) merge into one replacement named after the longest form. A
// replacement never starts or ends inside a JSON escape sequence, so valid
// JSON stays valid JSON: when src looks like a JSON document (it starts
// with { or [) the replacement keeps the JSON structure a span crosses (see
// emitJSON); otherwise the span becomes the bare placeholder. On error (a
// destroyed index) nothing is appended.
func (ix *Index) Scrub(dst, src []byte) (out []byte, n int, err error) {
	mp := getMatches()
	ix.mu.RLock()
	ms, err := ix.find(src, *mp, 0)
	defer func() { ix.mu.RUnlock(); putMatches(mp, ms) }()
	if err != nil {
		return dst, 0, err
	}
	if len(ms) == 0 {
		return append(dst, src...), 0, nil
	}
	if looksJSON(src) {
		return ix.emitJSON(dst, src, ms), len(ms), nil
	}
	return ix.emit(dst, src, ms, len(src)), len(ms), nil
}

// Replace is Scrub into a new buffer that is allocated only when src holds
// a secret: it returns nil and 0 when nothing matched.
func (ix *Index) Replace(src []byte) (out []byte, n int, err error) {
	mp := getMatches()
	ix.mu.RLock()
	ms, err := ix.find(src, *mp, 0)
	defer func() { ix.mu.RUnlock(); putMatches(mp, ms) }()
	if err != nil || len(ms) == 0 {
		return nil, 0, err
	}
	out = make([]byte, 0, len(src)+len(ms)*32)
	if looksJSON(src) {
		return ix.emitJSON(out, src, ms), len(ms), nil
	}
	return ix.emit(out, src, ms, len(src)), len(ms), nil
}

// ScrubString is Scrub for strings; s itself is returned when nothing
// matched.
func (ix *Index) ScrubString(s string) (string, int, error) {
	in := []byte(s)
	out, n, err := ix.Replace(in)
	clear(in)
	if err != nil {
		return "", 0, err
	}
	if n == 0 {
		return s, 0, nil
	}
	return string(out), n, nil
}
