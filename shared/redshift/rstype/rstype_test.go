package rstype

import (
	"strings"
	"testing"
)

func TestMapFollowsTheTypeTable(t *testing.T) {
	o := Options{NumericPrecision: 19, NumericScale: 8, JSONSuper: true}
	cases := map[string]string{
		"smallint": "smallint", "integer": "integer", "bigint": "bigint", "boolean": "boolean",
		"real": "real", "double precision": "double precision", "date": "date",
		"time without time zone": "time", "time(3) without time zone": "time", "time with time zone": "timetz",
		"timestamp without time zone": "timestamp", "timestamp(3) with time zone": "timestamptz",
		"numeric(10,2)": "numeric(10,2)", "numeric(38,0)": "numeric(38,0)", "numeric(12)": "numeric(12,0)",
		"numeric": "numeric(19,8)", "numeric(40,2)": "numeric(19,8)", "numeric(5,-2)": "numeric(19,8)",
		"character varying(20)": "varchar(80)", "character varying(20000)": "varchar(65535)", "character(3)": "varchar(12)",
		"character varying": "varchar(65535)", "text": "varchar(65535)",
		"json": "super", "jsonb": "super", "bytea": "varbyte(1024000)", "uuid": "varchar(36)",
		"integer[]": "varchar(65535)", "int4range": "varchar(65535)", "interval": "varchar(65535)",
		"inet": "varchar(65535)", "cidr": "varchar(65535)", "macaddr": "varchar(65535)", "public.mood": "varchar(65535)",
	}
	for pg, want := range cases {
		if got := Map(pg, o); got != want {
			t.Errorf("Map(%q) = %q, want %q", pg, got, want)
		}
	}
	if got := Map("jsonb", Options{NumericPrecision: 19, NumericScale: 8}); got != "varchar(65535)" {
		t.Errorf("jsonb with json: varchar = %q", got)
	}
}

func conv(t *testing.T, c Column, in string) (string, Loss) {
	t.Helper()
	out, loss := c.Convert(&in)
	if out == nil {
		return "<NULL>", loss
	}
	return *out, loss
}

func TestConvertAwkwardValues(t *testing.T) {
	n198 := Column{Kind: Numeric, Precision: 19, Scale: 8}
	n102 := Column{Kind: Numeric, Precision: 10, Scale: 2}
	n380 := Column{Kind: Numeric, Precision: 38, Scale: 0}
	v4 := Column{Kind: Varchar, Bytes: 4}
	cases := []struct {
		name string
		col  Column
		in   string
		want string
		loss Loss
	}{
		{"ascii fits", v4, "abcd", "abcd", Exact},
		{"ascii cut", v4, "abcde", "abcd", Truncated},
		// é is 2 bytes, € 3, 😀 4: never cut inside one.
		{"two-byte at the boundary", v4, "abcé", "abc", Truncated},
		{"three-byte at the boundary", v4, "a€b", "a€", Truncated},
		{"four-byte whole", v4, "😀x", "😀", Truncated},
		{"four-byte straddling", v4, "a😀", "a", Truncated},
		{"multi-byte that fits", v4, "éé", "éé", Exact},
		{"empty string stays empty", v4, "", "", Exact},
		{"19-digit unscaled at the 64-bit cap", n198, "92233720368.54775807", "92233720368.54775807", Exact},
		{"19 digits just over the 64-bit cap", n198, "92233720368.54775808", "92233720368.54775807", Saturated},
		{"19-digit integer saturates", n198, "1234567890123456789", "92233720368.54775807", Saturated},
		{"negative saturates to the negative limit", n198, "-99999999999.99999999", "-92233720368.54775807", Saturated},
		{"numeric NaN becomes NULL", n198, "NaN", "<NULL>", Replaced},
		{"numeric Infinity saturates", n102, "Infinity", "99999999.99", Saturated},
		{"numeric -Infinity saturates", n102, "-Infinity", "-99999999.99", Saturated},
		{"extra decimals round half away from zero", n102, "1.005", "1.01", Rounded},
		{"negative rounding", n102, "-1.005", "-1.01", Rounded},
		{"trailing zeros are not a loss", n102, "1.500", "1.50", Exact},
		{"rounding carries", n102, "9.999", "10.00", Rounded},
		{"rounding to the limit saturates", n102, "99999999.999", "99999999.99", Saturated},
		{"scale padded", n102, "7", "7.00", Exact},
		{"38 digits fit", n380, strings.Repeat("9", 38), strings.Repeat("9", 38), Exact},
		{"39 digits saturate", n380, "1" + strings.Repeat("0", 38), strings.Repeat("9", 38), Saturated},
		{"small fraction", n102, "0.05", "0.05", Exact},
		{"negative zero", n102, "-0.001", "0.00", Rounded},
		{"date infinity", Column{Kind: Date}, "infinity", InfinityDate, Replaced},
		{"date -infinity", Column{Kind: Date}, "-infinity", MinusInfinityDate, Replaced},
		{"BC date passes", Column{Kind: Date}, "0044-03-15 BC", "0044-03-15 BC", Exact},
		{"timestamp infinity", Column{Kind: Timestamp}, "infinity", InfinityTimestamp, Replaced},
		{"timestamptz -infinity", Column{Kind: TimestampTZ}, "-infinity", MinusInfinityStamp + "+00", Replaced},
		{"timestamptz passes", Column{Kind: TimestampTZ}, "2024-02-29 23:59:59.999999+00", "2024-02-29 23:59:59.999999+00", Exact},
		{"time 24:00", Column{Kind: Time}, "24:00:00", "23:59:59.999999", Saturated},
		{"float NaN passes", Column{}, "NaN", "NaN", Exact},
		{"float -Infinity passes", Column{}, "-Infinity", "-Infinity", Exact},
		{"bytea hex loses its prefix", Column{Kind: Varbyte}, `\x00ff`, "00ff", Exact},
		{"bytea cut to the column", Column{Kind: Varbyte, Bytes: 1}, `\x00ff`, "00", Truncated},
		{"empty bytea becomes NULL (COPY loads an empty VARBYTE field as NULL)", Column{Kind: Varbyte}, `\x`, "<NULL>", Replaced},
		{"json passes", Column{Kind: Super}, `{"a": [1, "é"]}`, `{"a": [1, "é"]}`, Exact},
	}
	for _, c := range cases {
		got, loss := conv(t, c.col, c.in)
		if got != c.want || loss != c.loss {
			t.Errorf("%s: Convert(%q) = %q, %v; want %q, %v", c.name, c.in, got, loss, c.want, c.loss)
		}
	}
	if out, loss := v4.Convert(nil); out != nil || loss != Exact {
		t.Fatal("NULL must stay NULL")
	}
	big := strings.Repeat("x", MaxSuperBytes+1)
	if out, loss := (Column{Kind: Super}).Convert(&big); out != nil || loss != Replaced {
		t.Fatal("an oversized SUPER value must become NULL, counted")
	}
	long := strings.Repeat("é", 40000) // 80000 bytes
	if got, loss := conv(t, Column{Kind: Varchar}, long); len(got) != 65534 || loss != Truncated {
		t.Fatalf("varchar(65535) of 2-byte characters: %d bytes, %v", len(got), loss)
	}
}
