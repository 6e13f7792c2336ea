package main

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// field is one value in the Data API's typed-field format: a union, of
// which exactly one member is set.
type field struct {
	BlobValue    []byte
	BooleanValue *bool
	DoubleValue  *float64
	IsNull       *bool
	LongValue    *int64
	StringValue  *string
}

func (f field) MarshalJSON() ([]byte, error) {
	switch {
	case f.IsNull != nil:
		return json.Marshal(map[string]bool{"isNull": true})
	case f.BlobValue != nil:
		return json.Marshal(map[string][]byte{"blobValue": f.BlobValue})
	case f.BooleanValue != nil:
		return json.Marshal(map[string]bool{"booleanValue": *f.BooleanValue})
	case f.DoubleValue != nil:
		return json.Marshal(map[string]float64{"doubleValue": *f.DoubleValue})
	case f.LongValue != nil:
		return json.Marshal(map[string]int64{"longValue": *f.LongValue})
	case f.StringValue != nil:
		return json.Marshal(map[string]string{"stringValue": *f.StringValue})
	}
	return []byte(`{"isNull":true}`), nil
}

type columnMetadata struct {
	ColumnDefault   *string `json:"columnDefault,omitempty"`
	IsCaseSensitive bool    `json:"isCaseSensitive"`
	IsCurrency      bool    `json:"isCurrency"`
	IsSigned        bool    `json:"isSigned"`
	Label           string  `json:"label"`
	Length          int32   `json:"length"`
	Name            string  `json:"name"`
	Nullable        int32   `json:"nullable"`
	Precision       int32   `json:"precision"`
	Scale           int32   `json:"scale"`
	SchemaName      string  `json:"schemaName"`
	TableName       string  `json:"tableName"`
	TypeName        string  `json:"typeName"`
}

// Backend type OIDs and how Redshift names them in results.
var typeNames = map[uint32]string{
	16: "bool", 17: "varbyte", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "varchar", 26: "oid",
	114: "varchar", 700: "float4", 701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time",
	1114: "timestamp", 1184: "timestamptz", 1266: "timetz", 1700: "numeric", 3802: "super",
}

func metadata(fds []pgconn.FieldDescription) []columnMetadata {
	out := make([]columnMetadata, len(fds))
	for i, fd := range fds {
		name, ok := typeNames[fd.DataTypeOID]
		if !ok {
			name = "varchar"
		}
		m := columnMetadata{Name: fd.Name, Label: fd.Name, TypeName: name, Nullable: 1}
		switch fd.DataTypeOID {
		case 1043, 1042:
			if fd.TypeModifier > 4 {
				m.Length = fd.TypeModifier - 4
			}
			m.IsCaseSensitive = true
		case 25:
			m.IsCaseSensitive = true
		case 1700:
			if fd.TypeModifier > 4 {
				m.Precision = (fd.TypeModifier - 4) >> 16
				m.Scale = (fd.TypeModifier - 4) & 0xffff
			}
			m.IsSigned = true
		case 20, 21, 23, 700, 701:
			m.IsSigned = true
		}
		out[i] = m
	}
	return out
}

var trueV, falseV = true, false

// toField converts one backend value (text format) to a typed field.
func toField(oid uint32, v []byte) field {
	if v == nil {
		return field{IsNull: &trueV}
	}
	s := string(v)
	switch oid {
	case 16:
		if s == "t" {
			return field{BooleanValue: &trueV}
		}
		return field{BooleanValue: &falseV}
	case 20, 21, 23, 26:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return field{LongValue: &n}
		}
	case 700, 701:
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return field{DoubleValue: &f}
		}
	case 17:
		if b, err := hex.DecodeString(strings.TrimPrefix(s, `\x`)); err == nil {
			if b == nil {
				b = []byte{}
			}
			return field{BlobValue: b}
		}
	}
	return field{StringValue: &s}
}

// records renders rows [from, to) of a result.
func records(r *result, from, to int) [][]field {
	out := make([][]field, 0, to-from)
	for _, row := range r.rows[from:to] {
		rec := make([]field, len(row))
		for i, v := range row {
			rec[i] = toField(r.fields[i].DataTypeOID, v)
		}
		out = append(out, rec)
	}
	return out
}

// resultSize approximates the bytes a result holds.
func resultSize(r *result) int64 {
	if r == nil {
		return 0
	}
	var n int64
	for _, row := range r.rows {
		for _, v := range row {
			n += int64(len(v))
		}
	}
	return n
}
