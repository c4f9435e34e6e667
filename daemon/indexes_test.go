package daemon

import (
	"strings"
	"testing"

	"github.com/cdpvault/cdpvault/redact"
	"github.com/cdpvault/cdpvault/secretstore"
)

// TestTOTPSeedScrubbedInEveryPrintedForm: a TOTP seed stored one way is
// scrubbed as sites print it too (compact or in groups of four, upper or
// lower case); other kinds get no extra forms.
func TestTOTPSeedScrubbedInEveryPrintedForm(t *testing.T) {
	b := redact.NewBuilder()
	defer b.Destroy()
	if err := addScrubForms(b, secretstore.Meta{Name: "acme_totp", Kind: secretstore.KindTOTP}, []byte("jbsw y3dp ehpk 3pxp")); err != nil {
		t.Fatal(err)
	}
	if err := addScrubForms(b, secretstore.Meta{Name: "pw", Kind: secretstore.KindPassword}, []byte("Abcd efgh ijkl")); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Destroy()
	for _, form := range []string{"JBSWY3DPEHPK3PXP", "jbswy3dpehpk3pxp", "JBSW Y3DP EHPK 3PXP", "jbsw y3dp ehpk 3pxp"} {
		out, n, err := ix.ScrubString("key: " + form + ".")
		if err != nil || n != 1 || strings.Contains(strings.ToUpper(out), "JBSW") || !strings.Contains(out, "<<secret:acme_totp>>") {
			t.Errorf("%q: scrubbed to %q (%d, %v)", form, out, n, err)
		}
	}
	// a password is matched as stored, not in other cases or spacings
	if out, n, _ := ix.ScrubString("ABCD EFGH IJKL abcdefghijkl"); n != 0 {
		t.Errorf("a password got extra forms: %q", out)
	}
	if _, n, _ := ix.ScrubString("Abcd efgh ijkl"); n != 1 {
		t.Error("the password itself was not scrubbed")
	}
}
