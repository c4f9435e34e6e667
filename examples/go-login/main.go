// Command go-login logs in to the demo site through cdpvault with
// github.com/mafredri/cdp. It types the placeholder <<secret:demo_password>>;
// cdpvault puts the real password into the page, and this program never sees
// it.
//
//	CDP_URL=<cdp_url of a cdpvault session> SITE_URL=http://127.0.0.1:8080 go run ./examples/go-login
//
// mafredri/cdp drives a page over its own page socket (it has no flattened
// sessions), so the program opens a tab with the session's discovery endpoint
// (PUT <cdp_url>/json/new) and connects to the tab's webSocketDebuggerUrl,
// which cdpvault rewrote to point back through the daemon.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/input"
	"github.com/mafredri/cdp/protocol/page"
	"github.com/mafredri/cdp/protocol/runtime"
	"github.com/mafredri/cdp/rpcc"
)

func main() {
	outcome, err := run(os.Getenv("CDP_URL"), os.Getenv("SITE_URL"), envOr("USERNAME", "demo"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-login:", err)
		os.Exit(1)
	}
	fmt.Println(outcome)
	if outcome != "login ok" {
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(cdpURL, siteURL, user string) (string, error) {
	if cdpURL == "" || siteURL == "" {
		return "", errors.New("set CDP_URL (a cdpvault session's cdp_url) and SITE_URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	devt := devtool.New(cdpURL)
	tab, err := devt.Create(ctx)
	if err != nil {
		return "", fmt.Errorf("open a tab: %w", err)
	}
	defer devt.Close(context.Background(), tab)
	conn, err := rpcc.DialContext(ctx, tab.WebSocketDebuggerURL)
	if err != nil {
		return "", fmt.Errorf("connect to the tab: %w", err)
	}
	defer conn.Close()
	c := cdp.NewClient(conn)

	if err := c.Page.Enable(ctx); err != nil {
		return "", fmt.Errorf("Page.enable: %w", err)
	}
	if err := navigate(ctx, c, func() error {
		_, err := c.Page.Navigate(ctx, page.NewNavigateArgs(siteURL))
		return err
	}); err != nil {
		return "", fmt.Errorf("open the login page: %w", err)
	}
	// Type the username and the placeholder the way a user would: focus the
	// field, then insert text. cdpvault swaps the placeholder for the
	// password only here, in an input command, on the secret's origin.
	for _, step := range []struct{ field, text string }{
		{"username", user},
		{"password", "<<secret:demo_password>>"},
	} {
		if _, err := eval(ctx, c, "document.getElementById('"+step.field+"').focus()"); err != nil {
			return "", err
		}
		if err := c.Input.InsertText(ctx, input.NewInsertTextArgs(step.text)); err != nil {
			return "", fmt.Errorf("type into %s: %w", step.field, err)
		}
	}
	// Submit with the Enter key. Once cdpvault has typed a secret into the
	// page it refuses the client's own script there (requestSubmit() would
	// be refused) until the page navigates; keys and clicks still work.
	if err := navigate(ctx, c, func() error {
		down := input.NewDispatchKeyEventArgs("keyDown").SetKey("Enter").SetCode("Enter").SetWindowsVirtualKeyCode(13).SetText("\r")
		if err := c.Input.DispatchKeyEvent(ctx, down); err != nil {
			return err
		}
		return c.Input.DispatchKeyEvent(ctx, input.NewDispatchKeyEventArgs("keyUp").SetKey("Enter").SetCode("Enter").SetWindowsVirtualKeyCode(13))
	}); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	return eval(ctx, c, "document.getElementById('result').textContent")
}

// navigate runs start and waits for the page's next load event.
func navigate(ctx context.Context, c *cdp.Client, start func() error) error {
	load, err := c.Page.LoadEventFired(ctx)
	if err != nil {
		return err
	}
	defer load.Close()
	if err := start(); err != nil {
		return err
	}
	_, err = load.Recv()
	return err
}

func eval(ctx context.Context, c *cdp.Client, expr string) (string, error) {
	r, err := c.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs(expr).SetReturnByValue(true))
	if err != nil {
		return "", fmt.Errorf("evaluate %q: %w", expr, err)
	}
	if r.ExceptionDetails != nil {
		return "", fmt.Errorf("evaluate %q: %s", expr, r.ExceptionDetails.Text)
	}
	var s string
	if len(r.Result.Value) > 0 && r.Result.Value[0] == '"' {
		if err := json.Unmarshal(r.Result.Value, &s); err != nil {
			return "", err
		}
	}
	return s, nil
}
