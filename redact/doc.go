// Package redact finds every common encoding of a set of secret values in
// bytes and replaces each occurrence with the placeholder <<secret:NAME>>.
// It knows bytes and encodings, nothing of CDP: the caller decides which
// bytes to hand over (a whole CDP message, a decoded base64 field, the
// chunks of a stream).
//
// # Forms
//
// For every value the index derives the forms the value takes on the
// DevTools wire and in pages:
//
//   - raw bytes;
//   - JSON string escapes: Chrome's (", \ and control characters escaped,
//     DEL and every non-ASCII character as lower-case \uXXXX, emoji as
//     surrogate pairs, < > & raw), JSON.stringify's (non-ASCII raw), Go's
//     HTML-safe form (\u003c \u003e \u0026 \u2028 \u2029), both combined,
//     PHP's json_encode default (\/ and \uXXXX), and upper-case hex
//     variants;
//   - percent-encodings: form encoding and Go QueryEscape ('+' for space),
//     encodeURIComponent, encodeURI, Go PathEscape, and the minimal
//     escaping browsers apply to typed paths and queries, each with upper-
//     and lower-case hex;
//   - HTML/XML escapes: DOM serialisation of text and attributes (&nbsp;
//     included), Go's html.EscapeString, &quot;/&#x27;, &apos;, &#039;;
//   - base64, standard and URL-safe alphabets, at each of the three byte
//     alignments the value can have inside longer encoded data: only the
//     characters that depend on the value alone form the pattern; when it
//     matches, an adjacent partial edge character (and '=' padding) is
//     swallowed into the replacement so no bits of the value remain;
//   - combinations that occur: JSON inside HTML, HTML entities inside a
//     JSON document written by Go (\u0026amp;), URLs inside HTML or JSON,
//     JSON inside a query string, JSON encoded twice by the same encoder;
//   - every text form above as it travels the wire: as is, JSON-escaped
//     once by Chrome, and twice (a nested legacy
//     Target.receivedMessageFromTarget message, or a value the page
//     JSON.stringify'ed);
//   - each line (CR LF or LF) of a multi-line value, in all forms but
//     base64.
//
// # Minimum lengths
//
// A value must be at least MinValueLen (8) bytes: Add refuses shorter
// ones with ErrTooShort, and the store refuses them at store time. A
// derived form shorter than MinFormLen (8) bytes, such as a short line of
// a multi-line value, is dropped: eight bytes is the point below which
// ordinary text would be shredded by chance matches, and every form of a
// full value is at least that long (base64 cores of an 8-byte value are 10
// characters).
//
// # Matching
//
// Every occurrence of every form is found; overlapping occurrences (a
// secret inside another, a self-overlapping value such as "ababx" in
// "abababx") merge into one replacement named after the longest form, so
// no fragment remains. A replacement is widened so that it never starts or
// ends inside a JSON escape sequence at any nesting depth (a backslash
// run, \uXXXX digits). When the text is a JSON document (it starts with
// '{', '[' or '"', or is a valid JSON scalar), a span that crosses JSON
// structure keeps the structure: the string segments it covers collapse
// to the placeholder, and a number or literal it touches is replaced as a
// whole by the placeholder as a string. Valid JSON in, valid JSON out (the
// property FuzzScrub checks). Inside a nested JSON document held in a
// string (a legacy Target message) only the escape rule applies, so a
// secret spanning the inner document's structure or a number can leave the
// inner document invalid; the scrub package decodes such messages where it
// has to look inside them.
//
// The stream scrubber works on decoded bytes (response bodies, IO.read
// data) and always writes the bare placeholder; a span never reaches back
// into output already returned.
//
// # No plaintext in ordinary memory
//
// The index is a sparse sampling scan. With m the shortest form and k=5,
// the scanner fingerprints the k-byte window at every s-th byte
// (s = m-k+1, at most 64); every occurrence of a form of length >= m then
// holds exactly one sampled window at a form offset below s. The tables
// (a bitmap filter and a bucketed table of 32-bit tags with form number and
// offset) are keyed fingerprints under a random per-index key; the key and
// all forms live in ONE memguard LockedBuffer per index, against which
// candidates are verified. Before allocating, the index checks
// RLIMIT_MEMLOCK against what the process has locked (VmLck) and fails
// with an error rather than letting memguard panic. Destroy wipes and
// frees it.
//
// # Streams and logs
//
// Index.NewStream scrubs a sequence of chunks so that occurrences spanning
// chunk boundaries are found. NewHandler wraps a log/slog handler so that
// messages and attribute values never carry a secret.
package redact
