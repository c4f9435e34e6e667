package configs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cdpvault/cdpvault/browser"
)

// TestUnitsVerify runs verify-units.sh: systemd-analyze verify on every unit (any warning fails) and
// the exposure ceilings of systemd-analyze security --offline=true.
func TestUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install -y systemd); units not verified")
	}
	cmd := exec.Command("bash", "./verify-units.sh")
	cmd.Env = append(os.Environ(), "CDPVAULT_BIN="+cdpvaultBin(t))
	out, err := cmd.CombinedOutput()
	t.Logf("verify-units.sh:\n%s", out)
	if err != nil {
		t.Fatalf("verify-units.sh failed: %v", err)
	}
	for _, want := range []string{
		"ok verify (attach)", "ok verify (launch)",
		"exposure cdpvault.service (attach): ", "exposure cdpvault-chromium.service (attach): ",
		"exposure cdpvault.service (launch): ",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("verify-units.sh output lacks %q", want)
		}
	}
	// The README states the same exposure levels the script measured.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`exposure (\S+) \((\w+)\): ([0-9.]+)`).FindAllStringSubmatch(string(out), -1) {
		row := "| " + m[1] + " | " + m[2] + " | " + m[3] + " |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks the exposure row %q", row)
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cdpvaultBin builds the real cdpvault binary from the module root once per test run.
func cdpvaultBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "cdpvault-configs-bin-")
		if binErr != nil {
			return
		}
		binPath = binDir + "/cdpvault"
		out, err := exec.Command("go", "build", "-o", binPath, "..").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("building cdpvault: %v", binErr)
	}
	return binPath
}

// TestExampleConfigCheckConfig runs the daemon's own `check-config` on cdpvault.yaml.
func TestExampleConfigCheckConfig(t *testing.T) {
	out, err := exec.Command(cdpvaultBin(t), "check-config", "--config", "cdpvault.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("cdpvault check-config --config cdpvault.yaml: %v\n%s", err, out)
	}
	// And it is not a rubber stamp: a misspelt key in a copy is reported.
	data, err := os.ReadFile("cdpvault.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("metrics_listen:"), []byte("metrics_lisen:"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cdpvaultBin(t), "check-config", "--config", bad).CombinedOutput(); err == nil {
		t.Fatalf("check-config accepted a misspelt key:\n%s", out)
	}
}

// unitKeys reads a systemd unit into section -> key -> values (continuation lines joined).
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	var pending string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if strings.HasSuffix(line, "\\") {
			pending = strings.TrimSuffix(line, "\\")
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestServiceUnitSettings(t *testing.T) {
	u := unitKeys(t, "cdpvault.service")["Service"]
	want := map[string]string{
		"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s",
		"ExecStart":               "/usr/local/bin/cdpvault serve --config /etc/cdpvault/cdpvault.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"StateDirectory":          "cdpvault",
		"LoadCredentialEncrypted": "master.key:/etc/cdpvault/master.key.cred",
		"LimitMEMLOCK":            "64M", "LimitCORE": "0", "UMask": "0077",
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
		"ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
		"SystemCallErrorNumber": "EPERM", "KillMode": "mixed",
	}
	for k, v := range want {
		got := u[k]
		if len(got) != 1 || got[0] != v {
			t.Errorf("cdpvault.service %s=%q, want %q", k, got, v)
		}
	}
	// memguard needs mlock: @system-service brings @memlock, and nothing may take it away again.
	filters := strings.Join(u["SystemCallFilter"], " ")
	if !strings.Contains(filters, "@system-service") || strings.Contains(filters, "@memlock") ||
		strings.Contains(filters, "mlock") || strings.Contains(filters, "mprotect") {
		t.Errorf("SystemCallFilter %q must allow @system-service incl. mlock/mprotect", filters)
	}
	launch := unitKeys(t, "cdpvault-launch.conf")["Service"]
	for k, v := range map[string]string{"MemoryDenyWriteExecute": "no", "RestrictNamespaces": "user pid net"} {
		if got := launch[k]; len(got) != 1 || got[0] != v {
			t.Errorf("cdpvault-launch.conf %s=%q, want %q", k, got, v)
		}
	}
	chromium := unitKeys(t, "cdpvault-chromium.service")["Service"]
	exec := strings.Join(chromium["ExecStart"], " ")
	for _, f := range []string{"--remote-debugging-port=9223", "--remote-debugging-address=127.0.0.1", "--headless"} {
		if !strings.Contains(exec, f) {
			t.Errorf("cdpvault-chromium.service ExecStart lacks %s", f)
		}
	}
	if strings.Contains(exec, "--no-sandbox") {
		t.Error("cdpvault-chromium.service turns Chromium's sandbox off")
	}
	if got := chromium["DynamicUser"]; len(got) != 1 || got[0] != "yes" {
		t.Errorf("cdpvault-chromium.service DynamicUser=%q", got)
	}
}

// Config mirrors the config keys of INTERFACE.md (plus the daemon's sessions/metrics additions);
// decoding with KnownFields fails on any key the daemon would not know.
type Config struct {
	Listen        string   `yaml:"listen"`
	MetricsListen string   `yaml:"metrics_listen"`
	AllowOrigins  []string `yaml:"allow_origins"`
	DataDir       string   `yaml:"data_dir"`
	MasterKeyFile string   `yaml:"master_key_file"`
	Log           struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	Chrome struct {
		URL  string   `yaml:"url"`
		Path string   `yaml:"path"`
		Args []string `yaml:"args"`
	} `yaml:"chrome"`
	Geo struct {
		CredentialsTenant string `yaml:"credentials_tenant"`
		Pools             map[string]struct {
			Timezone  string `yaml:"timezone"`
			Locale    string `yaml:"locale"`
			Upstreams []struct {
				URL            string `yaml:"url"`
				Username       string `yaml:"username"`
				PasswordSecret string `yaml:"password_secret"`
			} `yaml:"upstreams"`
		} `yaml:"pools"`
	} `yaml:"geo"`
	Sessions struct {
		DefaultTTL string `yaml:"default_ttl"`
		MaxTTL     string `yaml:"max_ttl"`
		Max        int    `yaml:"max"`
	} `yaml:"sessions"`
	Metrics struct {
		SecretNameLabels bool `yaml:"secret_name_labels"`
	} `yaml:"metrics"`
	Audit struct {
		Retention string `yaml:"retention"`
	} `yaml:"audit"`
	Injection struct {
		Taint string `yaml:"taint"`
	} `yaml:"injection"`
}

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("cdpvault.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("cdpvault.yaml: %v", err)
	}
	if c.Listen != "127.0.0.1:9222" || c.MetricsListen != "127.0.0.1:9464" || c.Log.Level != "info" || c.Log.Format != "json" {
		t.Errorf("defaults changed: %+v", c)
	}
	if c.Chrome.URL != "http://127.0.0.1:9223" {
		t.Errorf("chrome.url %q does not point at cdpvault-chromium.service", c.Chrome.URL)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	walkKeys(t, root.Content[0], "", seen)
	for _, k := range []string{"listen", "metrics_listen", "allow_origins", "data_dir", "master_key_file",
		"log.level", "log.format", "chrome.url", "chrome.path", "chrome.args", "geo.credentials_tenant",
		"geo.pools.*.timezone", "geo.pools.*.locale", "geo.pools.*.upstreams[].url",
		"geo.pools.*.upstreams[].username", "geo.pools.*.upstreams[].password_secret",
		"sessions.default_ttl", "sessions.max_ttl", "sessions.max", "metrics.secret_name_labels", "audit.retention", "injection.taint"} {
		if !seen[k] {
			t.Errorf("cdpvault.yaml lacks key %s", k)
		}
	}
}

// walkKeys records every key path and requires a comment on each key (above it or at its end).
func walkKeys(t *testing.T, n *yaml.Node, prefix string, seen map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix == "geo.pools" {
				path = "*"
			}
			if prefix != "" {
				path = prefix + "." + path
			}
			seen[path] = true
			if k.HeadComment == "" && k.LineComment == "" && v.LineComment == "" && !(i == 0 && prefix != "" && strings.HasSuffix(prefix, "[]")) {
				t.Errorf("cdpvault.yaml key %s has no comment", path)
			}
			walkKeys(t, v, path, seen)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind == yaml.MappingNode && len(c.Content) > 0 && c.HeadComment == "" && c.Content[0].HeadComment == "" {
				t.Errorf("cdpvault.yaml item of %s has no comment", prefix)
			}
			walkKeys(t, c, prefix+"[]", seen)
		}
	}
}

func TestPrometheusConfig(t *testing.T) {
	var p struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeFile(t, "prometheus.yml", &p, false)
	if len(p.RuleFiles) != 1 || p.RuleFiles[0] != "alerts.yml" {
		t.Errorf("rule_files %q", p.RuleFiles)
	}
	if len(p.ScrapeConfigs) != 1 || p.ScrapeConfigs[0].JobName != "cdpvault" || p.ScrapeConfigs[0].MetricsPath != "/metrics" ||
		len(p.ScrapeConfigs[0].StaticConfigs) != 1 || strings.Join(p.ScrapeConfigs[0].StaticConfigs[0].Targets, ",") != "127.0.0.1:9464" {
		t.Errorf("scrape_configs %+v", p.ScrapeConfigs)
	}
}

func TestAlertRules(t *testing.T) {
	var a struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	decodeFile(t, "alerts.yml", &a, false)
	exprs := map[string]string{}
	for _, g := range a.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %+v lacks alert, expr, severity, summary or description", r)
			}
			exprs[r.Alert] = r.Expr
		}
	}
	for alert, frag := range map[string]string{
		"CdpvaultDown":                     `up{job="cdpvault"} == 0`,
		"CdpvaultAbsent":                   `absent(up{job="cdpvault"})`,
		"CdpvaultInjectionRefusalsSpiking": `cdpvault_secret_injections_total{result=~"refused.*"}`,
		"CdpvaultScrubFailures":            `cdpvault_scrub_failures_total`,
		"CdpvaultTaintedPageScript":        `cdpvault_tainted_refusals_total`,
		"CdpvaultGeoUpstreamDown":          `cdpvault_geo_upstream_up == 0`,
		"CdpvaultGeoPoolDown":              `cdpvault_geo_upstream_up`,
	} {
		if !strings.Contains(exprs[alert], frag) {
			t.Errorf("alert %s: expr %q lacks %q", alert, exprs[alert], frag)
		}
	}
	names := make([]string, 0, len(exprs))
	for n := range exprs {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("alerts: %s", strings.Join(names, ", "))
}

// TestPromtool checks the scrape config and rules with Prometheus' own promtool and runs the alert
// unit tests of alerts_test.yml (each alert fires when it should and not before).
func TestPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool is not installed (apt-get install -y prometheus); alert rules not unit-tested")
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// decodeFile decodes a YAML file; strict rejects keys v does not declare (Prometheus' files have
// many optional keys, which promtool checks).
func decodeFile(t *testing.T, path string, v any, strict bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestChromiumUnitCommand runs cdpvault-chromium.service's ExecStart the way the unit would: as an
// unprivileged user with no_new_privs (DynamicUser= and NoNewPrivileges=), with Chromium's sandbox on,
// its profile in a private directory. Only the port (0 instead of 9223, so tests never collide) and
// the /tmp paths (PrivateTmp=) are substituted. The browser must come up, answer /json/version and
// listen on 127.0.0.1 alone. The systemd sandboxing itself needs a running systemd and is not
// exercised here.
func TestChromiumUnitCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run Chromium as an unprivileged user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	svc := unitKeys(t, "cdpvault-chromium.service")["Service"]
	tmp, err := os.MkdirTemp("", "cdpvault-chromium-unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	line := strings.Join(svc["ExecStart"], " ")
	for old, repl := range map[string]string{"--remote-debugging-port=9223": "--remote-debugging-port=0", "=/tmp/": "=" + tmp + "/"} {
		if !strings.Contains(line, old) {
			t.Fatalf("ExecStart lacks %s", old)
		}
		line = strings.ReplaceAll(line, old, repl)
	}
	args := []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", "env"}
	for _, e := range svc["Environment"] {
		args = append(args, strings.Fields(strings.ReplaceAll(e, "=/tmp", "="+tmp))...)
	}
	args = append(args, strings.Fields(line)...)
	cmd := exec.Command("setpriv", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		deadline := time.Now().Add(10 * time.Second)
		for len(browser.GroupMembers(pgid)) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // waiting on processes we cannot reap
		}
	})
	// Waiting on an external process: poll for its DevToolsActivePort with a deadline.
	portFile := tmp + "/profile/DevToolsActivePort"
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for port == "" {
		if data, err := os.ReadFile(portFile); err == nil {
			if first, _, ok := strings.Cut(string(data), "\n"); ok {
				port = first
			}
		}
		select {
		case <-exited:
			t.Fatalf("chromium exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DevToolsActivePort within 30s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := browser.Attach(context.Background(), "http://127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Version(context.Background())
	if err != nil || !strings.Contains(v.Browser, "Chrome") {
		t.Fatalf("version %+v: %v", v, err)
	}
	// Sandbox on: no process of the group runs with --no-sandbox, and all run as the unprivileged user.
	for _, pid := range browser.GroupMembers(pgid) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte("--no-sandbox")) {
			t.Errorf("pid %d runs without Chromium's sandbox", pid)
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if bytes.Contains(status, []byte("\nUid:\t0")) {
			t.Errorf("pid %d runs as root", pid)
		}
	}
	// DevTools listens on loopback only.
	tcp, _ := os.ReadFile("/proc/net/tcp")
	p, _ := strconv.Atoi(port)
	hexPort := fmt.Sprintf(":%04X ", p)
	for _, l := range strings.Split(string(tcp), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && strings.HasSuffix(f[1]+" ", hexPort) && f[3] == "0A" && f[1] != "0100007F"+strings.TrimSpace(hexPort) {
			t.Errorf("DevTools port %s listens on %s, not 127.0.0.1", port, f[1])
		}
	}
	tcp6, _ := os.ReadFile("/proc/net/tcp6")
	for _, l := range strings.Split(string(tcp6), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && strings.HasSuffix(f[1]+" ", hexPort) && f[3] == "0A" {
			t.Errorf("DevTools port %s listens on IPv6 %s", port, f[1])
		}
	}
}
