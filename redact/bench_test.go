package redact

import (
	"bytes"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time. Benchmarks report it per
// op next to wall time: this machine is shared, and CPU time is what "per
// core" means.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ms/op and, with bytes > 0, MB/cpu-s.
func reportCPU(b *testing.B, start time.Duration, bytes int) {
	d := cpuTime() - start
	per := float64(d) / float64(b.N)
	b.ReportMetric(per/1e6, "cpu-ms/op")
	if bytes > 0 {
		b.ReportMetric(float64(bytes)/(per/1e9)/1e6, "MB/cpu-s")
	}
}

func benchIndex(b *testing.B, n int) *Index {
	b.Helper()
	ix, err := Build(randSecrets(n, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ix.Destroy)
	return ix
}

// BenchmarkScrub measures the index on 1 MiB of mostly non-matching CDP
// JSON with 1,000 secrets; BenchmarkScrubBaseline is the naive loop of
// bytes.ReplaceAll over every form of every secret on the same text.
func BenchmarkScrub(b *testing.B) {
	ix := benchIndex(b, 1000)
	text := cdpCorpus(1<<20, 2)
	b.SetBytes(int64(len(text)))
	b.ReportMetric(float64(ix.Forms()), "forms")
	dst := make([]byte, 0, len(text)+4096)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		out, _, err := ix.Scrub(dst[:0], text)
		if err != nil {
			b.Fatal(err)
		}
		dst = out
	}
	reportCPU(b, c0, len(text))
}

func BenchmarkScrubBaseline(b *testing.B) {
	ix := benchIndex(b, 1000)
	forms := formsOf(b, ix)
	text := cdpCorpus(1<<20, 2)
	ph := make([][]byte, len(forms))
	for i := range forms {
		ph[i] = []byte("<<secret:" + formName(ix, i) + ">>")
	}
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		out := text
		for i, f := range forms {
			out = bytes.ReplaceAll(out, f, ph[i])
		}
	}
	reportCPU(b, c0, len(text))
}

// BenchmarkScrubMatching has one secret occurrence every ~4 KiB.
func BenchmarkScrubMatching(b *testing.B) {
	secrets := randSecrets(1000, 1)
	ix := benchIndex(b, 1000)
	text := cdpCorpus(1<<20, 2)
	var withHits []byte
	for i := 0; i < len(text); i += 4096 {
		end := min(i+4096, len(text))
		withHits = append(withHits, text[i:end]...)
		withHits = append(withHits, "abc "...)
		withHits = append(withHits, secrets[(i/4096)%len(secrets)].Value...)
	}
	b.SetBytes(int64(len(withHits)))
	dst := make([]byte, 0, len(withHits)+4096)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		out, n, err := ix.Scrub(dst[:0], withHits)
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
		dst = out
	}
	reportCPU(b, c0, len(withHits))
}

// BenchmarkBuild builds an index of 1,000 secrets; heap-MiB is the Go heap
// retained by one index, locked-KiB its locked buffer.
func BenchmarkBuild(b *testing.B) {
	secrets := randSecrets(1000, 1)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var keep *Index
	c0 := cpuTime()
	for b.Loop() {
		if keep != nil {
			keep.Destroy()
		}
		ix, err := Build(secrets)
		if err != nil {
			b.Fatal(err)
		}
		keep = ix
	}
	b.StopTimer()
	reportCPU(b, c0, 0)
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(keep.LockedBytes())/1024, "locked-KiB")
	b.ReportMetric(float64(keep.Forms()), "forms")
	keep.Destroy()
}
