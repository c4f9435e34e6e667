package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cdpvault/cdpvault/geo"
	"github.com/cdpvault/cdpvault/secretstore"
)

// Config is the daemon's configuration: the YAML file of INTERFACE.md,
// overridden by environment variables, overridden by flags.
type Config struct {
	Listen        string          `yaml:"listen"`
	MetricsListen string          `yaml:"metrics_listen"`
	AllowOrigins  []string        `yaml:"allow_origins"`
	DataDir       string          `yaml:"data_dir"`
	MasterKeyFile string          `yaml:"master_key_file"`
	Log           LogConfig       `yaml:"log"`
	Chrome        ChromeConfig    `yaml:"chrome"`
	Geo           GeoConfig       `yaml:"geo"`
	Sessions      SessionsConfig  `yaml:"sessions"`
	Metrics       MetricsConfig   `yaml:"metrics"`
	Audit         AuditConfig     `yaml:"audit"`
	Injection     InjectionConfig `yaml:"injection"`
}

// InjectionConfig tunes secret injection (an addition to INTERFACE.md).
type InjectionConfig struct {
	// Taint is "document" (default): once a value is typed into a page,
	// the session's clients may not run script or change the DOM until
	// that document navigates or closes. "off" lets script run next to a
	// typed value, which a prompt-injected agent can use to read it back.
	Taint string `yaml:"taint"`
}

// Taint modes of injection.taint.
const (
	TaintDocument = "document"
	TaintOff      = "off"
)

// AuditConfig bounds the injection audit log (an addition to INTERFACE.md).
type AuditConfig struct {
	// Retention is how long audit records are kept; 0 keeps them for ever.
	Retention time.Duration `yaml:"retention"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// ChromeConfig selects launch mode (URL empty) or attach mode.
type ChromeConfig struct {
	URL  string   `yaml:"url"`
	Path string   `yaml:"path"`
	Args []string `yaml:"args"`
}

// GeoConfig holds the geo proxy pools.
type GeoConfig struct {
	CredentialsTenant string                `yaml:"credentials_tenant"`
	Pools             map[string]PoolConfig `yaml:"pools"`
}

// PoolConfig is one geo pool as written in the config file.
type PoolConfig struct {
	Timezone  string           `yaml:"timezone"`
	Locale    string           `yaml:"locale"`
	Upstreams []UpstreamConfig `yaml:"upstreams"`
}

// UpstreamConfig is one upstream proxy of a pool; the password is the vault
// secret PasswordSecret of the credentials tenant, never the config file.
type UpstreamConfig struct {
	URL            string `yaml:"url"`
	Username       string `yaml:"username"`
	PasswordSecret string `yaml:"password_secret"`
}

// geoPools converts the config's pools to the geo package's form.
func (g GeoConfig) geoPools() map[string]geo.PoolConfig {
	out := make(map[string]geo.PoolConfig, len(g.Pools))
	for name, p := range g.Pools {
		gp := geo.PoolConfig{Timezone: p.Timezone, Locale: p.Locale}
		for _, u := range p.Upstreams {
			gp.Upstreams = append(gp.Upstreams, geo.UpstreamConfig{URL: u.URL, Username: u.Username, PasswordSecret: u.PasswordSecret})
		}
		out[name] = gp
	}
	return out
}

// SessionsConfig bounds session lifetimes (an addition to INTERFACE.md).
type SessionsConfig struct {
	DefaultTTL time.Duration `yaml:"default_ttl"` // default 1h
	MaxTTL     time.Duration `yaml:"max_ttl"`     // default 24h
	Max        int           `yaml:"max"`         // concurrent sessions, default 32
}

// MetricsConfig holds opt-in metric settings (an addition to INTERFACE.md).
type MetricsConfig struct {
	// SecretNameLabels lets an operator opt in to secret names as label
	// values; off by default to keep cardinality bounded.
	SecretNameLabels bool `yaml:"secret_name_labels"`
}

// Defaults returns the embedded defaults `make run` starts on.
func Defaults() Config {
	return Config{
		Listen:        "127.0.0.1:9222",
		MetricsListen: "127.0.0.1:9464",
		DataDir:       defaultDataDir(),
		Log:           LogConfig{Level: "info", Format: "json"},
		Geo:           GeoConfig{CredentialsTenant: "ops"},
		Sessions:      SessionsConfig{DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour, Max: 32},
		Audit:         AuditConfig{Retention: 90 * 24 * time.Hour},
	}
}

func defaultDataDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd may pass several colon-separated directories.
		return strings.Split(d, ":")[0]
	}
	return "./data"
}

// Overrides are the values given as flags or environment variables; empty
// strings mean "not given".
type Overrides struct {
	ConfigFile    string
	DataDir       string
	MasterKeyFile string
	Listen        string
	MetricsListen string
}

// envOverrides reads the CDPVAULT_* environment variables.
func envOverrides(getenv func(string) string) Overrides {
	return Overrides{
		ConfigFile:    getenv("CDPVAULT_CONFIG"),
		DataDir:       getenv("CDPVAULT_DATA_DIR"),
		MasterKeyFile: getenv("CDPVAULT_MASTER_KEY_FILE"),
		Listen:        getenv("CDPVAULT_LISTEN"),
		MetricsListen: getenv("CDPVAULT_METRICS_LISTEN"),
	}
}

func (o Overrides) over(base Overrides) Overrides {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return Overrides{
		ConfigFile:    pick(o.ConfigFile, base.ConfigFile),
		DataDir:       pick(o.DataDir, base.DataDir),
		MasterKeyFile: pick(o.MasterKeyFile, base.MasterKeyFile),
		Listen:        pick(o.Listen, base.Listen),
		MetricsListen: pick(o.MetricsListen, base.MetricsListen),
	}
}

// LoadConfig builds the configuration with flag > env > file > defaults
// precedence. It returns every problem found, joined, and the config as far
// as it could be read.
func LoadConfig(flags Overrides, getenv func(string) string) (Config, error) {
	eff := flags.over(envOverrides(getenv))
	cfg := Defaults()
	var errs []error
	if eff.ConfigFile != "" {
		if err := readConfigFile(eff.ConfigFile, &cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if eff.DataDir != "" {
		cfg.DataDir = eff.DataDir
	}
	if eff.MasterKeyFile != "" {
		cfg.MasterKeyFile = eff.MasterKeyFile
	}
	if eff.Listen != "" {
		cfg.Listen = eff.Listen
	}
	if eff.MetricsListen != "" {
		cfg.MetricsListen = eff.MetricsListen
	}
	errs = append(errs, cfg.Validate()...)
	return cfg, errors.Join(errs...)
}

func readConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, oneLine(err))
	}
	return nil
}

// oneLine folds a multi-line error (yaml reports one line per problem) into
// one line.
func oneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		add("metrics_listen: %q is not host:port", c.MetricsListen)
	}
	for _, o := range c.AllowOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			add("allow_origins: %q is not an origin like http://host:port", o)
		}
	}
	if c.DataDir == "" {
		add("data_dir: must not be empty")
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		add("log.level: %v", err)
	}
	switch c.Log.Format {
	case "json", "text", "":
	default:
		add("log.format: %q is not json or text", c.Log.Format)
	}
	if c.Chrome.URL != "" {
		if u, err := url.Parse(c.Chrome.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("chrome.url: %q is not an http://host:port URL", c.Chrome.URL)
		}
	}
	if c.Chrome.Path != "" {
		if _, err := os.Stat(c.Chrome.Path); err != nil {
			add("chrome.path: %v", err)
		}
	}
	if len(c.Geo.Pools) > 0 {
		if !secretstore.ValidName(c.Geo.CredentialsTenant) {
			add("geo.credentials_tenant: %q is not a valid tenant name", c.Geo.CredentialsTenant)
		}
		for name := range c.Geo.Pools {
			if !secretstore.ValidName(name) {
				add("geo.pools: %q is not a valid pool name", name)
			}
		}
		for _, err := range geo.ValidatePools(c.Geo.geoPools()) {
			add("geo: %v", err)
		}
	}
	if c.Sessions.DefaultTTL < 0 || c.Sessions.MaxTTL < 0 || c.Sessions.Max < 0 {
		add("sessions: durations and max must not be negative")
	}
	if c.Audit.Retention < 0 {
		add("audit.retention: must not be negative")
	}
	switch c.Injection.Taint {
	case "", TaintDocument, TaintOff:
	default:
		add("injection.taint: %q is not one of %q, %q", c.Injection.Taint, TaintDocument, TaintOff)
	}
	if c.Sessions.MaxTTL > 0 && c.Sessions.DefaultTTL > c.Sessions.MaxTTL {
		add("sessions: default_ttl %s exceeds max_ttl %s", c.Sessions.DefaultTTL, c.Sessions.MaxTTL)
	}
	return errs
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// StorePath is the SQLite file under the data dir.
func (c *Config) StorePath() string { return filepath.Join(c.DataDir, "cdpvault.db") }

// MasterKeyPath resolves the master key file and whether it may be created:
// the configured file, else systemd's $CREDENTIALS_DIRECTORY/master.key if
// it exists, else <data-dir>/master.key (created on first use).
func (c *Config) MasterKeyPath(getenv func(string) string) (path string, create bool) {
	if c.MasterKeyFile != "" {
		return c.MasterKeyFile, false
	}
	if d := getenv("CREDENTIALS_DIRECTORY"); d != "" {
		p := filepath.Join(d, "master.key")
		if _, err := os.Stat(p); err == nil {
			return p, false
		}
	}
	return filepath.Join(c.DataDir, "master.key"), true
}
