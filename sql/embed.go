// Package sql holds the SQL that pgferry installs on sources and targets.
// Files are templates: @schema@ is replaced by a quoted identifier
// (pgx.Identifier.Sanitize), never by raw text.
package sql

import (
	_ "embed"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed source/capture.sql
var captureSQL string

//go:embed target/watermark.sql
var watermarkSQL string

// CaptureVersion is the version of source/capture.sql; bump it with any change.
const CaptureVersion = 4

// Capture returns the idempotent install/upgrade script for trigger capture
// in the given schema.
func Capture(schema string) string { return render(captureSQL, schema) }

// Watermark returns the idempotent script for the target watermark table.
func Watermark(schema string) string { return render(watermarkSQL, schema) }

func render(tmpl, schema string) string {
	return strings.ReplaceAll(tmpl, "@schema@", pgx.Identifier{schema}.Sanitize())
}
