package secretstore

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"hunter2-hunter2\n":                       "hunter2-hunter2",
		"hunter2-hunter2\r\n":                     "hunter2-hunter2",
		"hunter2-hunter2":                         "hunter2-hunter2",
		"two lines\nhere\n\n":                     "two lines\nhere\n",
		"  spaces kept  \n":                       "  spaces kept  ",
		strings.Repeat("v", MaxValueLen) + "\r\n": strings.Repeat("v", MaxValueLen),
	} {
		// One byte at a time, as a pipe may deliver it.
		b, err := ReadValue(iotest.OneByteReader(strings.NewReader(in)))
		if err != nil {
			t.Fatalf("ReadValue(%q): %v", in, err)
		}
		if string(b.Bytes()) != want {
			t.Errorf("ReadValue(%q) = %q", in, b.Bytes())
		}
		b.Destroy()
	}
	for _, in := range []string{"", "\n", "qz7x!\n", strings.Repeat("v", MaxValueLen+1), strings.Repeat("v", MaxValueLen) + "\n\n", strings.Repeat("v", 100000)} {
		b, err := ReadValue(strings.NewReader(in))
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("ReadValue(len %d): %v", len(in), err)
		}
		if b != nil {
			b.Destroy()
		}
		if err != nil && len(in) > 4 && strings.Contains(err.Error(), strings.TrimSpace(in)) {
			t.Errorf("error holds the value")
		}
	}
	boom := errors.New("boom")
	if _, err := ReadValue(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}
