// Command cdpvault is a CDP proxy that lets AI browser agents log in without
// ever seeing a credential. main only parses, runs and picks the exit code;
// everything else lives in package daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cdpvault/cdpvault/daemon"
)

func main() {
	err := daemon.Run(context.Background(), os.Args[1:], daemon.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	if err == nil {
		os.Exit(0)
	}
	msg := err.Error()
	if errors.Is(err, daemon.ErrUsage) {
		// Usage errors may carry the usage text on following lines.
		fmt.Fprintln(os.Stderr, "cdpvault: "+msg)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "cdpvault: "+strings.Join(strings.Fields(msg), " "))
	os.Exit(1)
}
