package ctxguard

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/target"
	"github.com/mafredri/cdp/rpcc"
)

// Dispose disposes every browser context the session created, on the
// shared Chrome whose DevTools HTTP base is upstream (the session's
// cdpproxy.Session.Upstream, e.g. "http://127.0.0.1:9222"), closing their
// pages. The daemon calls it when the session ends, before it closes the
// session's geo forwarder, so that no page is left pointing at a loopback
// port another session's forwarder may later reuse. Contexts already gone
// count as disposed. Every context is forgotten whatever happens (nothing
// may use them any more); the error lists those that could not be
// disposed.
func (g *Guard) Dispose(ctx context.Context, upstream string) error {
	ids := g.Contexts()
	g.mu.Lock()
	clear(g.allowed)
	clear(g.former)
	clear(g.windows)
	clear(g.targets)
	g.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	v, err := devtool.New(strings.TrimSuffix(upstream, "/")).Version(ctx)
	if err != nil {
		return fmt.Errorf("dispose browser contexts: discover browser: %w", err)
	}
	conn, err := rpcc.DialContext(ctx, v.WebSocketDebuggerURL)
	if err != nil {
		return fmt.Errorf("dispose browser contexts: dial browser: %w", err)
	}
	defer conn.Close()
	c := cdp.NewClient(conn)
	live, err := c.Target.GetBrowserContexts(ctx)
	if err != nil {
		return fmt.Errorf("dispose browser contexts: list: %w", err)
	}
	ours := make(map[string]bool, len(ids))
	for _, id := range ids {
		ours[id] = true
	}
	var errs []error
	for _, id := range live.BrowserContextIDs { // gone ones need nothing
		if !ours[string(id)] {
			continue
		}
		if err := c.Target.DisposeBrowserContext(ctx, target.NewDisposeBrowserContextArgs(id)); err != nil {
			errs = append(errs, fmt.Errorf("dispose browser context %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
