package rules

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Mask keeps the first keepFirst and last keepLast characters of s and
// writes '*' for every other one. A value no longer than keepFirst +
// keepLast is masked whole: showing all of it would leak it.
func Mask(s string, keepFirst, keepLast int) string {
	n := utf8.RuneCountInString(s)
	if n <= keepFirst+keepLast {
		return strings.Repeat("*", n)
	}
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i < keepFirst || i >= n-keepLast {
			b.WriteRune(r)
		} else {
			b.WriteByte('*')
		}
		i++
	}
	return b.String()
}

// Hash returns the lower-case hex SHA-256 of salt followed by s: in SQL,
// encode(sha256(convert_to(salt || s, 'UTF8')), 'hex').
func Hash(salt, s string) string {
	h := sha256.Sum256([]byte(salt + s))
	return hex.EncodeToString(h[:])
}

// cmpKind is how a filter compares values, by the column's type category.
type cmpKind int

const (
	cmpText cmpKind = iota
	cmpNumber
	cmpTime
	cmpBool
)

func kindOf(category byte) cmpKind {
	switch category {
	case 'N':
		return cmpNumber
	case 'D':
		return cmpTime
	case 'B':
		return cmpBool
	}
	return cmpText
}

// operand is a filter value parsed once for its column's kind.
type operand struct {
	text string
	num  *big.Float // nil for NaN
	nan  bool
	tm   time.Time
	inf  int // -1, +1 for ±infinity (numbers and times)
	b    bool
}

func parseOperand(k cmpKind, s string) (operand, error) {
	o := operand{text: s}
	switch k {
	case cmpNumber:
		switch strings.ToLower(s) {
		case "nan":
			o.nan = true
			return o, nil
		case "infinity", "+infinity", "inf":
			o.inf = 1
			return o, nil
		case "-infinity", "-inf":
			o.inf = -1
			return o, nil
		}
		f, _, err := big.ParseFloat(s, 10, 256, big.ToNearestEven)
		if err != nil {
			return o, fmt.Errorf("%q is not a number", s)
		}
		o.num = f
	case cmpTime:
		switch s {
		case "infinity":
			o.inf = 1
			return o, nil
		case "-infinity":
			o.inf = -1
			return o, nil
		}
		t, err := parseTime(s)
		if err != nil {
			return o, err
		}
		o.tm = t
	case cmpBool:
		switch strings.ToLower(s) {
		case "t", "true", "yes", "on", "1":
			o.b = true
		case "f", "false", "no", "off", "0":
		default:
			return o, fmt.Errorf("%q is not a boolean", s)
		}
	}
	return o, nil
}

// Time layouts of PostgreSQL's ISO output (datestyle ISO, YMD) and of
// what a user writes in a filter; a time without an offset is UTC.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00:00", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02",
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date or time like 2024-05-01 or 2024-05-01 12:00:00+00", s)
}

// compare orders a and b as PostgreSQL does for the kind: NaN above
// every number, infinities at the ends.
func compare(k cmpKind, a, b operand) int {
	switch k {
	case cmpNumber:
		if a.nan || b.nan {
			return boolCmp(a.nan, b.nan)
		}
		if a.inf != 0 || b.inf != 0 {
			return cmp.Compare(a.inf, b.inf)
		}
		return a.num.Cmp(b.num)
	case cmpTime:
		if a.inf != 0 || b.inf != 0 {
			return cmp.Compare(a.inf, b.inf)
		}
		return a.tm.Compare(b.tm)
	case cmpBool:
		return boolCmp(a.b, b.b)
	}
	return strings.Compare(a.text, b.text)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// cond is one compiled filter condition.
type cond struct {
	idx  int // column index in the change's columns
	op   string
	kind cmpKind
	vals []operand
	re   *regexp.Regexp
}

// holds evaluates the condition on value v (nil is NULL). A NULL passes
// only is_null: as in SQL, no comparison with NULL holds.
func (c *cond) holds(v *string) (bool, error) {
	switch c.op {
	case "is_null":
		return v == nil, nil
	case "not_null":
		return v != nil, nil
	}
	if v == nil {
		return false, nil
	}
	switch c.op {
	case "contains":
		return strings.Contains(*v, c.vals[0].text), nil
	case "regex":
		return c.re.MatchString(*v), nil
	}
	got, err := parseOperand(c.kind, *v)
	if err != nil {
		return false, err
	}
	switch c.op {
	case "in", "not_in":
		in := false
		for _, o := range c.vals {
			if compare(c.kind, got, o) == 0 {
				in = true
				break
			}
		}
		return in == (c.op == "in"), nil
	}
	r := compare(c.kind, got, c.vals[0])
	switch c.op {
	case "eq":
		return r == 0, nil
	case "ne":
		return r != 0, nil
	case "gt":
		return r > 0, nil
	case "gte":
		return r >= 0, nil
	case "lt":
		return r < 0, nil
	case "lte":
		return r <= 0, nil
	}
	return false, fmt.Errorf("unknown filter op %q", c.op)
}
