package sql

import _ "embed"

//go:embed target/schema.sql
var schemaSQL string

// SchemaRegistry returns the idempotent script for the schema sync
// registry on a target.
func SchemaRegistry(schema string) string { return render(schemaSQL, schema) }
