// In-page reads of the echo page, shared by the Playwright and Puppeteer
// scripts: every representation of the values, including decoded ones.
export function readEchoPage() {
  const all = (sel, f) => [...document.querySelectorAll(sel)].map(f);
  const utf8 = (b64) => new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  return {
    outerHTML: document.documentElement.outerHTML,
    bodyInnerText: document.body.innerText,
    raw: all('.raw', (e) => e.textContent),
    attr: all('.attr', (e) => e.getAttribute('title')),
    linkHref: all('.link', (e) => e.href),
    linkDecoded: all('.link', (e) => new URL(e.href).searchParams.get('v')),
    b64: all('.b64', (e) => e.dataset.v),
    b64Decoded: all('.b64', (e) => utf8(e.dataset.v)),
    jsonScript: document.getElementById('json').textContent,
    jsonParsed: JSON.parse(document.getElementById('json').textContent).values,
    jsonStringified: JSON.stringify(JSON.parse(document.getElementById('json').textContent)),
    fieldValue: all('.field', (e) => e.value),
    fetched: all('.fetched', (e) => e.textContent),
    codes: all('.raw', (e) => [...e.textContent].map((c) => c.codePointAt(0)).join(',')),
  };
}
