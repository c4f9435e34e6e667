package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedenceFlagEnvFile(t *testing.T) {
	file := writeFile(t, "c.yaml", "listen: 127.0.0.1:1111\ndata_dir: /from/file\nmetrics_listen: 127.0.0.1:3333\n")
	cases := []struct {
		name        string
		flags       Overrides
		env         map[string]string
		wantListen  string
		wantDataDir string
	}{
		{"file only", Overrides{ConfigFile: file}, nil, "127.0.0.1:1111", "/from/file"},
		{"env beats file", Overrides{ConfigFile: file}, map[string]string{"CDPVAULT_DATA_DIR": "/from/env", "CDPVAULT_LISTEN": "127.0.0.1:2222"}, "127.0.0.1:2222", "/from/env"},
		{"flag beats env", Overrides{ConfigFile: file, DataDir: "/from/flag", Listen: "127.0.0.1:4444"}, map[string]string{"CDPVAULT_DATA_DIR": "/from/env", "CDPVAULT_LISTEN": "127.0.0.1:2222"}, "127.0.0.1:4444", "/from/flag"},
		{"env names the file", Overrides{}, map[string]string{"CDPVAULT_CONFIG": file}, "127.0.0.1:1111", "/from/file"},
		{"defaults", Overrides{}, nil, "127.0.0.1:9222", "./data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(tc.flags, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != tc.wantListen || cfg.DataDir != tc.wantDataDir {
				t.Fatalf("listen %q data_dir %q, want %q %q", cfg.Listen, cfg.DataDir, tc.wantListen, tc.wantDataDir)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	file := writeFile(t, "bad.yaml", `
listen: nonsense
metrics_listen: "127.0.0.1:x:y"
allow_origins: ["not an origin"]
log: {level: loud, format: xml}
chrome: {url: "ftp://x"}
`)
	_, err := LoadConfig(Overrides{ConfigFile: file}, env(nil))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"listen:", "metrics_listen:", "allow_origins:", "log.level:", "log.format:", "chrome.url:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if n := len(flattenErrors(err)); n != 6 {
		t.Errorf("got %d problems, want 6: %v", n, err)
	}
}

func TestConfigUnknownKeyRefused(t *testing.T) {
	file := writeFile(t, "c.yaml", "listn: 127.0.0.1:1\n")
	_, err := LoadConfig(Overrides{ConfigFile: file}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "listn") {
		t.Fatalf("unknown key not reported: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line per problem: %q", err)
	}
}

func TestConfigExampleFileAccepted(t *testing.T) {
	p := filepath.Join("..", "configs", "cdpvault.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("example config missing: %v", err)
	}
	if _, err := LoadConfig(Overrides{ConfigFile: p}, env(nil)); err != nil {
		t.Fatalf("example config rejected: %v", err)
	}
}

func TestMasterKeyPathResolution(t *testing.T) {
	creds := t.TempDir()
	cfg := Defaults()
	cfg.DataDir = "/var/lib/x"
	if p, create := cfg.MasterKeyPath(env(nil)); p != "/var/lib/x/master.key" || !create {
		t.Fatalf("data-dir default: %q %v", p, create)
	}
	// $CREDENTIALS_DIRECTORY counts only when the credential exists.
	if p, _ := cfg.MasterKeyPath(env(map[string]string{"CREDENTIALS_DIRECTORY": creds})); p != "/var/lib/x/master.key" {
		t.Fatalf("missing credential used: %q", p)
	}
	if err := os.WriteFile(filepath.Join(creds, "master.key"), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, create := cfg.MasterKeyPath(env(map[string]string{"CREDENTIALS_DIRECTORY": creds})); p != filepath.Join(creds, "master.key") || create {
		t.Fatalf("credential: %q %v", p, create)
	}
	cfg.MasterKeyFile = "/etc/k"
	if p, create := cfg.MasterKeyPath(env(map[string]string{"CREDENTIALS_DIRECTORY": creds})); p != "/etc/k" || create {
		t.Fatalf("explicit: %q %v", p, create)
	}
}

func TestCommandParsesFlagsAfterPositionals(t *testing.T) {
	c := newCommand("secret set")
	tenant := c.fs.String("tenant", "", "")
	var origins stringList
	c.fs.Var(&origins, "origin", "")
	if err := c.parse([]string{"--tenant", "acme", "pw", "--origin", "https://a.example", "--origin=http://b.test:8080"}); err != nil {
		t.Fatal(err)
	}
	if *tenant != "acme" || len(c.args) != 1 || c.args[0] != "pw" || len(origins) != 2 {
		t.Fatalf("tenant %q args %q origins %q", *tenant, c.args, origins)
	}
}
