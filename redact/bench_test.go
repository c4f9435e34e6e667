package redact

import (
	"bytes"
	"runtime"
	"testing"
)

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
	for b.Loop() {
		out, _, err := ix.Scrub(dst[:0], text)
		if err != nil {
			b.Fatal(err)
		}
		dst = out
	}
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
	for b.Loop() {
		out := text
		for i, f := range forms {
			out = bytes.ReplaceAll(out, f, ph[i])
		}
	}
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
	for b.Loop() {
		out, n, err := ix.Scrub(dst[:0], withHits)
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
		dst = out
	}
}

// BenchmarkBuild builds an index of 1,000 secrets; heap-MiB is the Go heap
// retained by one index, locked-KiB its locked buffer.
func BenchmarkBuild(b *testing.B) {
	secrets := randSecrets(1000, 1)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var keep *Index
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
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(keep.LockedBytes())/1024, "locked-KiB")
	b.ReportMetric(float64(keep.Forms()), "forms")
	keep.Destroy()
}
