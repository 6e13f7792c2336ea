package pgtext

import (
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
)

func s(v string) batch.Value { return &v }

func render(r batch.Row) string {
	var b strings.Builder
	for i, v := range r {
		if i > 0 {
			b.WriteByte('|')
		}
		if v == nil {
			b.WriteString("<null>")
		} else {
			b.WriteString("[" + *v + "]")
		}
	}
	return b.String()
}

func TestParseRecordFollowsRecordOutQuoting(t *testing.T) {
	cases := []struct {
		in   string
		want batch.Row
	}{
		{`(1,abc)`, batch.Row{s("1"), s("abc")}},
		{`(1,,3)`, batch.Row{s("1"), nil, s("3")}},
		{`(,)`, batch.Row{nil, nil}},
		{`("")`, batch.Row{s("")}},
		{`(1,"a b")`, batch.Row{s("1"), s("a b")}},
		{`("x""y","back\\slash")`, batch.Row{s(`x"y`), s(`back\slash`)}},
		{`("{1,NULL,""a,b""}")`, batch.Row{s(`{1,NULL,"a,b"}`)}},
		{`("(1,2)",NaN,-Infinity)`, batch.Row{s("(1,2)"), s("NaN"), s("-Infinity")}},
		{"(\"tab\there\nnl\",\\N)", batch.Row{s("tab\there\nnl"), s("N")}},
		{`(1,)`, batch.Row{s("1"), nil}},
		{`("a""")`, batch.Row{s(`a"`)}},
	}
	for _, c := range cases {
		got, err := ParseRecord(c.in)
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", c.in, err)
		}
		if render(got) != render(c.want) {
			t.Errorf("ParseRecord(%q) = %s, want %s", c.in, render(got), render(c.want))
		}
	}
}

func TestParseRecordNResolvesSingleNull(t *testing.T) {
	got, err := ParseRecordN("()", 1)
	if err != nil || len(got) != 1 || got[0] != nil {
		t.Fatalf("ParseRecordN(\"()\", 1) = %v, %v; want one NULL", got, err)
	}
	if _, err := ParseRecordN("(1,2)", 3); err == nil {
		t.Fatal("field count mismatch was accepted")
	}
}

func TestParseRecordRejectsMalformed(t *testing.T) {
	for _, in := range []string{"", "1,2", "(1,2", `("abc)`, `(abc\)`} {
		if _, err := ParseRecord(in); err == nil {
			t.Errorf("ParseRecord(%q) accepted malformed input", in)
		}
	}
}

func TestAppendCopyRowEscapes(t *testing.T) {
	got := string(AppendCopyRow(nil, batch.Row{s("a\tb"), nil, s("x\\N"), s("l1\nl2\r")}))
	want := "a\\tb\t\\N\tx\\\\N\tl1\\nl2\\r\n"
	if got != want {
		t.Fatalf("AppendCopyRow = %q, want %q", got, want)
	}
}
