package sql

import _ "embed"

//go:embed target/load.sql
var loadSQL string

// Load returns the idempotent script for the target's initial-load state:
// per-table load state, copied chunks, held changes and dropped indexes.
func Load(schema string) string { return render(loadSQL, schema) }
