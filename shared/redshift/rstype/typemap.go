// Package rstype maps PostgreSQL types to Redshift types and converts
// values (in PostgreSQL text form, as batches carry them) into what the
// Redshift column can hold. Every conversion that changes a value reports
// its kind of loss, so callers can count and log it: nothing is lost
// silently.
package rstype

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Redshift limits the map and the converter respect.
const (
	MaxVarcharBytes = 65535            // VARCHAR(n): n bytes, not characters
	MaxVarbyteBytes = 1024000          // VARBYTE(n)
	MaxSuperBytes   = 16 * 1024 * 1024 // one SUPER value
	MaxPrecision    = 38
)

// Options are a target's choices (targets.<name>.numeric and .json).
type Options struct {
	// NumericPrecision and NumericScale type a numeric that has no typmod
	// or more precision than Redshift's 38.
	NumericPrecision, NumericScale int
	// JSONSuper maps json and jsonb to SUPER; false maps them to
	// VARCHAR(65535).
	JSONSuper bool
}

var (
	varcharRE = regexp.MustCompile(`^(?:character varying|varchar|character|char|bpchar)\((\d+)\)$`)
	numericRE = regexp.MustCompile(`^(?:numeric|decimal)\((\d+)(?:,\s*(-?\d+))?\)$`)
	precRE    = regexp.MustCompile(`\(\d+\)`)
)

// Map returns the Redshift column type for a PostgreSQL column type as
// format_type renders it ("character varying(20)", "numeric(10,2)",
// "timestamp(3) with time zone", "integer[]", "public.mood"):
//
//	smallint, integer, bigint, boolean, real, double precision: themselves
//	date, time, timetz, timestamp, timestamptz (any precision): themselves
//	numeric(p,s), p ≤ 38 and 0 ≤ s ≤ p: itself
//	numeric, numeric(p>38,…), negative scale: numeric(Options)
//	varchar(n), char(n): varchar(min(4n, 65535)), n characters of up to 4 bytes
//	text, varchar, char without length, and anything else: varchar(65535)
//	json, jsonb: SUPER, or varchar(65535) with JSONSuper false
//	bytea: VARBYTE(1024000)
//	uuid: varchar(36)
//
// Arrays, ranges, enums, intervals, network, geometric and other types
// Redshift lacks become varchar(65535) holding the PostgreSQL text form.
func Map(pgType string, o Options) string {
	t := strings.TrimSpace(pgType)
	if strings.HasSuffix(t, "[]") {
		return varcharMax
	}
	switch t {
	case "smallint", "integer", "bigint", "boolean", "real", "double precision", "date":
		return t
	case "json", "jsonb":
		if o.JSONSuper {
			return "super"
		}
		return varcharMax
	case "bytea":
		return "varbyte(" + strconv.Itoa(MaxVarbyteBytes) + ")"
	case "uuid":
		return "varchar(36)"
	case "numeric", "decimal":
		return fmt.Sprintf("numeric(%d,%d)", o.NumericPrecision, o.NumericScale)
	}
	base := precRE.ReplaceAllString(t, "")
	switch base {
	case "time without time zone", "time":
		return "time"
	case "time with time zone", "timetz":
		return "timetz"
	case "timestamp without time zone", "timestamp":
		return "timestamp"
	case "timestamp with time zone", "timestamptz":
		return "timestamptz"
	}
	if m := varcharRE.FindStringSubmatch(t); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("varchar(%d)", min(4*n, MaxVarcharBytes))
	}
	if m := numericRE.FindStringSubmatch(t); m != nil {
		p, _ := strconv.Atoi(m[1])
		s := 0
		if m[2] != "" {
			s, _ = strconv.Atoi(m[2])
		}
		if p <= MaxPrecision && s >= 0 && s <= p {
			return fmt.Sprintf("numeric(%d,%d)", p, s)
		}
		return fmt.Sprintf("numeric(%d,%d)", o.NumericPrecision, o.NumericScale)
	}
	return varcharMax
}

var varcharMax = "varchar(" + strconv.Itoa(MaxVarcharBytes) + ")"
