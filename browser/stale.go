package browser

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// staleAge is how old a profile directory without a live browser must be before it counts as stale:
// younger ones may belong to a browser still starting in another daemon sharing the base dir.
const staleAge = time.Minute

// RemoveStaleProfiles removes profile directories that Launch created under baseDir ("" =
// os.TempDir()) and whose browser is gone, e.g. after the daemon was killed with SIGKILL (its
// browsers then die by the parent-death signal, but nobody removes their profiles). A directory is
// kept while Chromium's SingletonLock in it names a live process using that profile, and while it
// is younger than a minute. It returns how many directories it removed. Call it at daemon start.
func RemoveStaleProfiles(baseDir string) (int, error) {
	if baseDir == "" {
		baseDir = os.TempDir()
	}
	ents, err := os.ReadDir(baseDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("remove stale browser profiles: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), profilePrefix) {
			continue
		}
		dir := filepath.Join(baseDir, e.Name())
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleAge || profileInUse(dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("remove stale browser profiles: %w", errors.Join(errs...))
	}
	return removed, nil
}

// profileInUse reads Chromium's SingletonLock ("<hostname>-<pid>") in dir and reports whether that
// process is alive and runs with --user-data-dir=dir.
func profileInUse(dir string) bool {
	target, err := os.Readlink(filepath.Join(dir, "SingletonLock"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(target, '-')
	if i < 0 {
		return false
	}
	pid, err := strconv.Atoi(target[i+1:])
	if err != nil || pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if arg == "--user-data-dir="+dir {
			return true
		}
	}
	return false
}
