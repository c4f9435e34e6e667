package e2e_test

// Secret values used by the tests. Each is long enough for any sensible
// scrubber minimum and none is a substring of another.
var (
	// trickyValue has quotes, <, &, %, +, spaces, non-ASCII letters and an emoji.
	trickyValue = []byte(`Tr1cky "pa'ss" <w&rd> 100%+ Ünïcødé 😀 end`)
	plainValue  = []byte("PlainSecretValue7f3kQzX")
	otherValue  = []byte("NotGrantedValue-94hxLw2q")
	betaValue   = []byte("BetaTenantValue-c8Jw0pRt")
	unusedName  = "no_such_secret"
)
