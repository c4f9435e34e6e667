package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/awnumar/memguard"
	"golang.org/x/term"

	"github.com/cdpvault/cdpvault/secretstore"
)

// ErrUsage marks errors in how the command was called; main exits 2 on them.
var ErrUsage = errors.New("usage")

// IO is the standard streams of one invocation.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

const usageText = `usage: cdpvault [--config FILE] [--data-dir DIR] [--master-key-file FILE] COMMAND
commands:
  serve [--listen ADDR] [--metrics-listen ADDR]
  check-config
  tenant create NAME | tenant ls | tenant rm NAME
  token create --tenant NAME [--label TEXT] | token ls --tenant NAME | token revoke --tenant NAME ID
  secret set --tenant NAME SECRET [--origin ORIGIN ...] [--kind password|text|totp]   (value on stdin)
  secret ls --tenant NAME | secret rm --tenant NAME SECRET
  audit ls --tenant NAME [--limit N]
  key rotate [--new-key-file FILE] | key retire`

func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// command is one invocation: the global flags plus the subcommand's.
type command struct {
	fs        *flag.FlagSet
	overrides Overrides
	args      []string // positional arguments after the command words
}

func newCommand(name string) *command {
	c := &command{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard)
	c.fs.StringVar(&c.overrides.ConfigFile, "config", "", "YAML config file")
	c.fs.StringVar(&c.overrides.DataDir, "data-dir", "", "data directory")
	c.fs.StringVar(&c.overrides.MasterKeyFile, "master-key-file", "", "32-byte master key file")
	return c
}

// parse parses flags and positionals in any order (flags may follow
// positional arguments, as in `secret set --tenant t NAME --origin o`).
func (c *command) parse(args []string) error {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return usagef("%s: %v", c.fs.Name(), err)
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	c.args = pos
	return nil
}

// Run executes one cdpvault invocation. It never calls os.Exit.
func Run(ctx context.Context, args []string, stdio IO) error {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	// Global flags may stand before the command words.
	global := newCommand("cdpvault")
	if err := global.fs.Parse(args); err != nil {
		return usagef("%v", err)
	}
	rest := global.fs.Args()
	if len(rest) == 0 {
		return usagef("no command given\n%s", usageText)
	}
	verb := rest[0]
	rest = rest[1:]
	switch verb {
	case "serve":
		return runServe(ctx, global.overrides, rest, stdio)
	case "check-config":
		return runCheckConfig(global.overrides, rest, stdio)
	case "tenant", "token", "secret", "key", "audit":
		if len(rest) == 0 {
			return usagef("%s: missing subcommand", verb)
		}
		return runAdmin(ctx, global.overrides, verb+" "+rest[0], rest[1:], stdio)
	case "help", "-h", "--help":
		fmt.Fprintln(stdio.Stdout, usageText)
		return nil
	default:
		return usagef("unknown command %q", verb)
	}
}

func runCheckConfig(g Overrides, args []string, stdio IO) error {
	c := newCommand("check-config")
	c.overrides = g
	if err := c.parse(args); err != nil {
		return err
	}
	if len(c.args) > 0 {
		return usagef("check-config takes no arguments")
	}
	_, err := LoadConfig(c.overrides.over(g), stdio.Getenv)
	if err != nil {
		for _, e := range flattenErrors(err) {
			fmt.Fprintln(stdio.Stderr, "config:", e)
		}
		return fmt.Errorf("config has %d problem(s)", len(flattenErrors(err)))
	}
	fmt.Fprintln(stdio.Stdout, "config ok")
	return nil
}

func flattenErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// openStore loads config and opens the store for an admin command.
func openStore(ctx context.Context, o Overrides, stdio IO) (*secretstore.Store, Config, error) {
	cfg, err := LoadConfig(o, stdio.Getenv)
	if err != nil {
		return nil, cfg, fmt.Errorf("config: %w", oneLine(err))
	}
	st, err := openStoreWith(ctx, cfg, stdio.Getenv, nil)
	return st, cfg, err
}

func runAdmin(ctx context.Context, g Overrides, verb string, args []string, stdio IO) error {
	c := newCommand(verb)
	c.overrides = g
	tenant := c.fs.String("tenant", "", "tenant name")
	label := c.fs.String("label", "", "token label")
	kind := c.fs.String("kind", "password", "secret kind")
	newKey := c.fs.String("new-key-file", "", "new master key file")
	limit := c.fs.Int("limit", 100, "records")
	var origins stringList
	c.fs.Var(&origins, "origin", "origin the secret may be injected on (repeatable)")
	if err := c.parse(args); err != nil {
		return err
	}
	needTenant := func() error {
		if *tenant == "" {
			return usagef("%s: --tenant is required", verb)
		}
		return nil
	}
	nargs := func(n int, what string) error {
		if len(c.args) != n {
			return usagef("%s: expected %s", verb, what)
		}
		return nil
	}
	// Validate the call before touching the store.
	switch verb {
	case "tenant create", "tenant rm":
		if err := nargs(1, "NAME"); err != nil {
			return err
		}
	case "tenant ls", "key retire":
		if err := nargs(0, "no arguments"); err != nil {
			return err
		}
	case "key rotate":
		if err := nargs(0, "no arguments"); err != nil {
			return err
		}
	case "token create", "token ls", "secret ls", "audit ls":
		if err := needTenant(); err != nil {
			return err
		}
		if err := nargs(0, "no positional arguments"); err != nil {
			return err
		}
	case "token revoke":
		if err := needTenant(); err != nil {
			return err
		}
		if err := nargs(1, "token ID"); err != nil {
			return err
		}
	case "secret set", "secret rm":
		if err := needTenant(); err != nil {
			return err
		}
		if err := nargs(1, "SECRET"); err != nil {
			return err
		}
	default:
		return usagef("unknown command %q", verb)
	}

	st, _, err := openStore(ctx, c.overrides, stdio)
	if err != nil {
		return err
	}
	defer st.Close()

	out := stdio.Stdout
	switch verb {
	case "tenant create":
		if err := st.CreateTenant(ctx, c.args[0]); err != nil {
			return fmt.Errorf("tenant create: %w", err)
		}
		fmt.Fprintf(out, "tenant %s created\n", c.args[0])
	case "tenant ls":
		ts, err := st.ListTenants(ctx)
		if err != nil {
			return fmt.Errorf("tenant ls: %w", err)
		}
		table(out, "NAME\tSECRETS\tCREATED", func(tw io.Writer) {
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", t.Name, t.Secrets, t.CreatedAt.UTC().Format(time.RFC3339))
			}
		})
	case "tenant rm":
		if err := st.DeleteTenant(ctx, c.args[0]); err != nil {
			return fmt.Errorf("tenant rm: %w", err)
		}
		fmt.Fprintf(out, "tenant %s removed; its key is destroyed\n", c.args[0])
	case "token create":
		tok, info, err := st.CreateToken(ctx, *tenant, *label)
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		fmt.Fprintln(out, tok)
		fmt.Fprintf(stdio.Stderr, "token %s created for tenant %s; it is shown once\n", info.ID, *tenant)
	case "token ls":
		toks, err := st.ListTokens(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("token ls: %w", err)
		}
		table(out, "ID\tLABEL\tCREATED", func(tw io.Writer) {
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Label, t.CreatedAt.UTC().Format(time.RFC3339))
			}
		})
	case "token revoke":
		if err := st.RevokeToken(ctx, *tenant, c.args[0]); err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		fmt.Fprintf(out, "token %s revoked\n", c.args[0])
	case "secret set":
		return secretSet(ctx, st, *tenant, c.args[0], origins, secretstore.Kind(*kind), stdio)
	case "secret ls":
		t, err := st.Tenant(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("secret ls: %w", err)
		}
		ms, err := t.Secrets(ctx)
		if err != nil {
			return fmt.Errorf("secret ls: %w", err)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
		table(out, "NAME\tKIND\tVERSION\tORIGINS\tUPDATED", func(tw io.Writer) {
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.Name, m.Kind, m.Version, strings.Join(m.Origins, ","), m.UpdatedAt.UTC().Format(time.RFC3339))
			}
		})
	case "secret rm":
		t, err := st.Tenant(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("secret rm: %w", err)
		}
		if err := t.DeleteSecret(ctx, c.args[0]); err != nil {
			return fmt.Errorf("secret rm: %w", err)
		}
		fmt.Fprintf(out, "secret %s removed\n", c.args[0])
	case "audit ls":
		t, err := st.Tenant(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("audit ls: %w", err)
		}
		recs, err := t.Audit(ctx, *limit)
		if err != nil {
			return fmt.Errorf("audit ls: %w", err)
		}
		table(out, "TIME\tSESSION\tSECRET\tVERSION\tORIGIN\tSINK\tRESULT\tREASON", func(tw io.Writer) {
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), r.Session, r.Secret, r.Version, r.Origin, r.Sink, r.Result, r.Reason)
			}
		})
	case "key rotate":
		return keyRotate(ctx, st, c.overrides, *newKey, stdio)
	case "key retire":
		n, err := st.RetireMasterKeys(ctx)
		if err != nil {
			return fmt.Errorf("key retire: %w", err)
		}
		fmt.Fprintf(out, "retired %d wrapped key(s); only master key version %d remains\n", n, st.MasterKeyVersion())
	}
	return nil
}

// table writes a header and rows aligned in columns.
func table(out io.Writer, header string, rows func(tw io.Writer)) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	tw.Flush()
}

// secretSet reads the value from stdin (never argv), without echo on a
// terminal, strips one trailing newline, and stores it.
func secretSet(ctx context.Context, st *secretstore.Store, tenant, name string, origins []string, kind secretstore.Kind, stdio IO) error {
	if !secretstore.ValidName(name) {
		return fmt.Errorf("secret set: %w", secretstore.ErrInvalidName)
	}
	value, err := readValue(stdio)
	if err != nil {
		return fmt.Errorf("secret set: %w", err)
	}
	defer value.Destroy()
	t, err := st.Tenant(ctx, tenant)
	if err != nil {
		return fmt.Errorf("secret set: %w", err)
	}
	meta, created, err := t.PutSecret(ctx, name, value.Bytes(), origins, kind)
	if err != nil {
		return fmt.Errorf("secret set: %w", err)
	}
	verb := "replaced"
	if created {
		verb = "created"
	}
	fmt.Fprintf(stdio.Stdout, "secret %s %s (version %d)\n", meta.Name, verb, meta.Version)
	return nil
}

// readValue reads a secret value from stdin into a locked buffer.
func readValue(stdio IO) (*memguard.LockedBuffer, error) {
	if f, ok := stdio.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stdio.Stderr, "value (not echoed): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stdio.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		return memguard.NewBufferFromBytes(b), nil // wipes b
	}
	buf := memguard.NewBuffer(secretstore.MaxValueLen + 2)
	n, err := io.ReadFull(stdio.Stdin, buf.Bytes())
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		buf.Destroy()
		return nil, fmt.Errorf("read value: %w", err)
	}
	if n == len(buf.Bytes()) {
		buf.Destroy()
		return nil, fmt.Errorf("%w: longer than %d bytes", secretstore.ErrInvalidValue, secretstore.MaxValueLen)
	}
	v := buf.Bytes()[:n]
	if len(v) > 0 && v[len(v)-1] == '\n' {
		v = v[:len(v)-1]
		if len(v) > 0 && v[len(v)-1] == '\r' {
			v = v[:len(v)-1]
		}
	}
	out := memguard.NewBufferFromBytes(v) // copies and wipes v
	buf.Destroy()
	if out.Size() == 0 {
		out.Destroy()
		return nil, fmt.Errorf("%w: empty value on stdin", secretstore.ErrInvalidValue)
	}
	return out, nil
}

// keyRotate re-wraps every tenant key under a new master key. The new key is
// read from --new-key-file, or generated there (default: the current key
// file's path with ".new") when the file does not exist.
func keyRotate(ctx context.Context, st *secretstore.Store, o Overrides, newKeyFile string, stdio IO) error {
	cfg, err := LoadConfig(o, stdio.Getenv)
	if err != nil {
		return fmt.Errorf("key rotate: config: %w", oneLine(err))
	}
	cur, _ := cfg.MasterKeyPath(stdio.Getenv)
	if newKeyFile == "" {
		newKeyFile = cur + ".new"
	}
	key, err := secretstore.LoadMasterKey(newKeyFile, true)
	if err != nil {
		return fmt.Errorf("key rotate: %w", err)
	}
	v, err := st.RotateMasterKey(ctx, key)
	if err != nil {
		return fmt.Errorf("key rotate: %w", err)
	}
	fmt.Fprintf(stdio.Stdout, "every tenant key is now also wrapped under master key version %d (%s)\n", v, newKeyFile)
	fmt.Fprintf(stdio.Stdout, "next: install %s as the master key, restart the daemon, then run `cdpvault key retire` with the new key\n", newKeyFile)
	return nil
}
