package secretstore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestLoadMasterKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := make([]byte, 32)
	rand.Read(raw)
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := hex.EncodeToString(raw)
	var fps [][]byte
	for _, p := range []string{
		write("raw", raw, 0o600),
		write("hex", []byte(h), 0o400),
		write("hexnl", []byte(h+"\n"), 0o600),
		write("hexcrlf", []byte(strings.ToUpper(h)+"\r\n"), 0o600),
	} {
		e, err := LoadMasterKey(p, false)
		if err != nil {
			t.Fatalf("LoadMasterKey(%s): %v", filepath.Base(p), err)
		}
		fp, err := fingerprint(e)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, fp)
	}
	for _, fp := range fps[1:] {
		if !bytes.Equal(fp, fps[0]) {
			t.Fatal("raw and hex forms of one key give different keys")
		}
	}

	for name, c := range map[string]struct {
		data []byte
		mode os.FileMode
		want string
	}{
		"short":       {raw[:31], 0o600, "32 raw bytes"},
		"long":        {append(bytes.Clone(raw), 'x'), 0o600, "32 raw bytes"},
		"hexbad":      {[]byte(strings.Repeat("zz", 32)), 0o600, "hexadecimal"},
		"hex2nl":      {[]byte(h + "\n\n"), 0o600, "32 raw bytes"},
		"empty":       {nil, 0o600, "found 0 bytes"},
		"zero":        {make([]byte, 32), 0o600, "all zero"},
		"groupread":   {raw, 0o640, "chmod 600"},
		"worldread":   {raw, 0o604, "chmod 600"},
		"hexworldrd":  {[]byte(h), 0o644, "group or others"},
		"hugefile":    {bytes.Repeat(raw, 100), 0o600, "32 raw bytes"},
		"groupwrite":  {raw, 0o620, "group or others"},
		"worldexec":   {raw, 0o601, "group or others"},
		"ownerwriteo": {raw, 0o200, ""}, // unreadable by the owner would fail on read for non-root; root reads anyway
	} {
		p := write("k-"+name, c.data, c.mode)
		_, err := LoadMasterKey(p, false)
		if c.want == "" {
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), raw) {
			t.Errorf("%s: error holds key bytes", name)
		}
	}
	if _, err := LoadMasterKey(filepath.Join(dir, "missing"), false); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing without create: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMasterKey(fifo, false); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
	if _, err := LoadMasterKey(dir, false); err == nil {
		t.Error("a directory was accepted as key file")
	}
	if _, err := LoadMasterKey("", true); err == nil {
		t.Error("empty path accepted")
	}
}

func TestLoadMasterKeyCredentialsDirectory(t *testing.T) {
	// Not parallel: sets CREDENTIALS_DIRECTORY.
	creds := t.TempDir()
	raw := make([]byte, 32)
	rand.Read(raw)
	p := filepath.Join(creds, "master.key")
	os.WriteFile(p, raw, 0o440)
	os.Chmod(p, 0o440) // as an ACL mask would show
	if _, err := LoadMasterKey(p, false); err == nil {
		t.Fatal("group-readable key accepted outside $CREDENTIALS_DIRECTORY")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if _, err := LoadMasterKey(p, false); err != nil {
		t.Fatalf("systemd credential with ACL mask: %v", err)
	}
	os.Chmod(p, 0o444)
	if _, err := LoadMasterKey(p, false); err == nil {
		t.Fatal("world-readable key accepted in $CREDENTIALS_DIRECTORY")
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestLoadMasterKeyCreate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "nested")
	p := filepath.Join(dir, "master.key")
	// Several processes starting on a fresh data dir at once must end up with one key.
	const n = 6
	fps := make([][]byte, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := LoadMasterKey(p, true)
			if err != nil {
				t.Error(err)
				return
			}
			fps[i], _ = fingerprint(e)
		}()
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(fps[i], fps[0]) {
			t.Fatal("concurrent creators got different keys")
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("created key: mode %v size %d, want 0600 and 32 bytes", fi.Mode().Perm(), fi.Size())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("created dir mode %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover temporary files: %v", entries)
	}
	e, err := LoadMasterKey(p, true) // exists: loaded, not replaced
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := fingerprint(e); !bytes.Equal(fp, fps[0]) {
		t.Fatal("existing key was replaced")
	}
}
