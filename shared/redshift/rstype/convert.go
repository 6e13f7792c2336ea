package rstype

import (
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is a Redshift column type, as far as conversion cares.
type Kind int

const (
	Other Kind = iota // passed through as it is (integers, floats, boolean, …)
	Varchar
	Numeric
	Date
	Time
	Timestamp // also TIMESTAMPTZ
	TimestampTZ
	Super
	Varbyte
)

// Column is a target column's type.
type Column struct {
	Kind Kind
	// Bytes bounds a Varchar or Varbyte value (0: the type's maximum).
	Bytes int
	// Precision and Scale of a Numeric.
	Precision, Scale int
}

// Loss says how a conversion changed a value.
type Loss int

const (
	Exact     Loss = iota
	Truncated      // a string or byte string cut to fit (at a character boundary)
	Saturated      // a number beyond the column's range set to its limit
	Replaced       // a value Redshift cannot represent (NaN, infinite dates, oversized SUPER) set to a stand-in or NULL
	Rounded        // a number with more decimals than the column's scale rounded
)

func (l Loss) String() string {
	return [...]string{"exact", "truncated", "saturated", "replaced", "rounded"}[l]
}

// Stand-ins for infinite dates and timestamps, which Redshift lacks: the
// largest and smallest values that read as "the far future" and "the
// distant past" in any tool. Each use counts as Replaced.
const (
	InfinityDate       = "9999-12-31"
	MinusInfinityDate  = "0001-01-01"
	InfinityTimestamp  = "9999-12-31 23:59:59.999999"
	MinusInfinityStamp = "0001-01-01 00:00:00"
)

// ParseColumn reads a Redshift (or, in tests, PostgreSQL) column type from
// information_schema.columns: data_type and, when not NULL,
// character_maximum_length, numeric_precision and numeric_scale.
func ParseColumn(dataType string, charLen, precision, scale int) Column {
	switch strings.ToLower(dataType) {
	case "character varying", "varchar", "character", "char", "bpchar", "nvarchar", "text":
		return Column{Kind: Varchar, Bytes: charLen}
	case "numeric", "decimal":
		if precision == 0 {
			return Column{Kind: Other} // an unconstrained PostgreSQL numeric (tests only)
		}
		return Column{Kind: Numeric, Precision: precision, Scale: scale}
	case "date":
		return Column{Kind: Date}
	case "time without time zone", "time", "time with time zone", "timetz":
		return Column{Kind: Time}
	case "timestamp without time zone", "timestamp":
		return Column{Kind: Timestamp}
	case "timestamp with time zone", "timestamptz":
		return Column{Kind: TimestampTZ}
	case "super", "json", "jsonb":
		return Column{Kind: Super}
	case "varbyte", "binary varying", "varbinary", "bytea":
		return Column{Kind: Varbyte, Bytes: charLen}
	}
	return Column{Kind: Other}
}

// Convert returns v (a PostgreSQL text-form value; nil is NULL) as the
// column can hold it, and how it changed. What it does on purpose:
//
//   - Varchar: cut to Bytes (65535 when unknown) bytes at a UTF-8
//     character boundary (Truncated).
//   - Numeric: rounded half away from zero to Scale (Rounded); beyond the
//     column's range (p digits; at p = 19 the unscaled value also fits 64
//     bits, so ±92233720368.54775807 for numeric(19,8)) set to the limit
//     (Saturated); ±Infinity saturate the same way; NaN becomes NULL
//     (Replaced): Redshift's NUMERIC has no NaN.
//   - Date, Timestamp, TimestampTZ: ±infinity become the stand-ins above
//     (Replaced). Other values pass as they are (ISO, UTC, as captured).
//   - Time: 24:00:00, which PostgreSQL allows and Redshift does not,
//     becomes 23:59:59.999999 (Saturated).
//   - Super: a value over 16 MB becomes NULL (Replaced).
//   - Varbyte: PostgreSQL's hex form \x… loses its \x prefix (COPY reads
//     VARBYTE as hex) and is cut to Bytes (Truncated); an empty value
//     becomes NULL (Replaced): COPY loads an empty field as NULL in every
//     column but CHAR and VARCHAR.
//   - Other kinds pass unchanged: integers, booleans (t/f) and floats
//     (NaN and ±Infinity included, which REAL and DOUBLE PRECISION hold).
func (c Column) Convert(v *string) (*string, Loss) {
	if v == nil {
		return nil, Exact
	}
	s := *v
	switch c.Kind {
	case Varchar:
		n := c.Bytes
		if n <= 0 {
			n = MaxVarcharBytes
		}
		if len(s) <= n {
			return v, Exact
		}
		out := TruncateBytes(s, n)
		return &out, Truncated
	case Numeric:
		return c.numeric(s)
	case Date:
		switch s {
		case "infinity":
			return ptr(InfinityDate), Replaced
		case "-infinity":
			return ptr(MinusInfinityDate), Replaced
		}
	case Timestamp, TimestampTZ:
		suffix := ""
		if c.Kind == TimestampTZ {
			suffix = "+00"
		}
		switch s {
		case "infinity":
			return ptr(InfinityTimestamp + suffix), Replaced
		case "-infinity":
			return ptr(MinusInfinityStamp + suffix), Replaced
		}
	case Time:
		if strings.HasPrefix(s, "24:00:00") {
			return ptr("23:59:59.999999" + s[len("24:00:00"):]), Saturated
		}
	case Super:
		if len(s) > MaxSuperBytes {
			return nil, Replaced
		}
	case Varbyte:
		h := strings.TrimPrefix(s, `\x`)
		if h == "" {
			// COPY loads an empty field as NULL in every column but
			// CHAR and VARCHAR, so an empty VARBYTE cannot arrive.
			return nil, Replaced
		}
		n := c.Bytes
		if n <= 0 {
			n = MaxVarbyteBytes
		}
		if len(h) > 2*n {
			h = h[:2*n]
			return &h, Truncated
		}
		return &h, Exact
	}
	return v, Exact
}

func ptr(s string) *string { return &s }

// TruncateBytes returns the longest prefix of s of at most n bytes that
// ends at a UTF-8 character boundary.
func TruncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

var maxInt64 = new(big.Int).SetUint64(1<<63 - 1)

// numericMax is the largest unscaled value of numeric(p, s).
func numericMax(p int) *big.Int {
	m := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(p)), nil)
	m.Sub(m, big.NewInt(1))
	if p == 19 {
		// Redshift keeps up to 19 digits in 64 bits.
		m = maxInt64
	}
	return m
}

func (c Column) numeric(s string) (*string, Loss) {
	limit := numericMax(c.Precision)
	switch s {
	case "NaN":
		return nil, Replaced
	case "Infinity":
		return ptr(formatUnscaled(limit, c.Scale)), Saturated
	case "-Infinity":
		return ptr(formatUnscaled(new(big.Int).Neg(limit), c.Scale)), Saturated
	}
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimLeft(s, "+-")
	intPart, frac, _ := strings.Cut(digits, ".")
	if intPart == "" && frac == "" || strings.ContainsFunc(intPart+frac, func(r rune) bool { return r < '0' || r > '9' }) {
		return ptr(s), Exact // not a plain decimal; let the server judge it
	}
	loss := Exact
	if len(frac) > c.Scale {
		drop := frac[c.Scale:]
		frac = frac[:c.Scale]
		if strings.Trim(drop, "0") != "" {
			loss = Rounded
		}
		u := unscaled(intPart, frac)
		if drop[0] >= '5' {
			u.Add(u, big.NewInt(1))
		}
		return c.finish(u, neg, limit, loss)
	}
	frac += strings.Repeat("0", c.Scale-len(frac))
	return c.finish(unscaled(intPart, frac), neg, limit, loss)
}

func unscaled(intPart, frac string) *big.Int {
	u, ok := new(big.Int).SetString("0"+intPart+frac, 10)
	if !ok {
		return new(big.Int)
	}
	return u
}

func (c Column) finish(u *big.Int, neg bool, limit *big.Int, loss Loss) (*string, Loss) {
	if u.Cmp(limit) > 0 {
		u, loss = new(big.Int).Set(limit), Saturated
	}
	if neg && u.Sign() != 0 {
		u = new(big.Int).Neg(u)
	}
	return ptr(formatUnscaled(u, c.Scale)), loss
}

// formatUnscaled renders u·10^-scale as a plain decimal.
func formatUnscaled(u *big.Int, scale int) string {
	neg := u.Sign() < 0
	d := new(big.Int).Abs(u).String()
	if scale > 0 {
		if len(d) <= scale {
			d = strings.Repeat("0", scale-len(d)+1) + d
		}
		d = d[:len(d)-scale] + "." + d[len(d)-scale:]
	}
	if neg {
		d = "-" + d
	}
	return d
}

// String renders a column type for messages.
func (c Column) String() string {
	switch c.Kind {
	case Varchar:
		return "varchar(" + strconv.Itoa(c.Bytes) + ")"
	case Numeric:
		return "numeric(" + strconv.Itoa(c.Precision) + "," + strconv.Itoa(c.Scale) + ")"
	case Varbyte:
		return "varbyte"
	case Super:
		return "super"
	}
	return "other"
}
