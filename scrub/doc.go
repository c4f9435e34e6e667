// Package scrub is the interceptor on the browser-to-client leg of the CDP
// proxy that removes every secret of the session's scope from everything
// Chrome sends back: responses, events and nested legacy
// Target.receivedMessageFromTarget messages (scrubbed as JSON in JSON), and
// the discovery JSON (ScrubDiscovery).
//
// A message is scrubbed as raw bytes with the session's current redact
// index; a message nothing matched is forwarded byte for byte. Fields that
// carry base64 are decoded, scrubbed and re-encoded: result.body,
// result.postData and result.data of responses with base64Encoded:true
// (Network.getResponseBody, Fetch.getResponseBody,
// Network.getRequestPostData, IO.read), every postDataEntries[].bytes, and
// payloadData of binary (opcode 2) WebSocket frames. IO.read responses are
// scrubbed as one stream per handle (base64 or text), so a value split
// across two chunks is still found; a few hundred trailing bytes of each
// chunk are held back until the next read (all of it at eof).
//
// Pixels pass untouched: Page.captureScreenshot, Page.screencastFrame and
// Page.printToPDF data is not decoded (their base64 text is still scanned
// as text). A secret rendered into a screenshot or PDF is not removed.
//
// Fail closed: a panic, an undecodable base64 field, a JSON document that
// cannot be walked, or a matcher error (a destroyed or missing index)
// replaces a response with the CDP error "cdpvault: response withheld:
// could not be scrubbed" and drops an event; both are counted in
// cdpvault_scrub_failures_total. cdpvault_redactions_total counts
// replacements.
package scrub
