package verify

import (
	"testing"

	"github.com/pgferry/pgferry/shared/redshift/rstype"
)

// TestCanonRendersBothSidesAlike: values a Redshift target returns and
// the mapped source values must render the same whatever spelling each
// side uses.
func TestCanonRendersBothSidesAlike(t *testing.T) {
	for _, c := range []struct {
		name   string
		col    rstype.Column
		a, b   string
		differ bool
	}{
		{"jsonb spacing and key order against SUPER", rstype.Column{Kind: rstype.Super}, `{"b": 1, "a": [1, 2.50]}`, `{"a":[1,2.50],"b":1}`, false},
		{"json numbers keep their text", rstype.Column{Kind: rstype.Super}, `{"a": 2.50}`, `{"a":2.5}`, true},
		{"varbyte with and without \\x", rstype.Column{Kind: rstype.Varbyte}, `\x00FF`, `00ff`, false},
		{"timestamptz offsets", rstype.Column{Kind: rstype.TimestampTZ}, `2024-02-29 23:59:59.5+05:30`, `2024-02-29 18:29:59.5+00`, false},
		{"timestamptz different instants", rstype.Column{Kind: rstype.TimestampTZ}, `2024-02-29 23:59:59+00`, `2024-02-29 23:59:58+00`, true},
		{"varchar is compared as text", rstype.Column{Kind: rstype.Varchar}, `a `, `a`, true},
	} {
		a, b := canon(c.col, &c.a), canon(c.col, &c.b)
		if (*a != *b) != c.differ {
			t.Errorf("%s: canon(%q) = %q, canon(%q) = %q; want differ=%v", c.name, c.a, *a, c.b, *b, c.differ)
		}
	}
	if canon(rstype.Column{Kind: rstype.Super}, nil) != nil {
		t.Error("NULL must stay NULL")
	}
}
