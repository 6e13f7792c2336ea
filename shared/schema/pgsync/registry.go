package pgsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/schema"
)

// Schema is where pgferry keeps its own objects on a target.
const Schema = config.TargetSchema

func registryTable() string { return pgx.Identifier{Schema, "schema_objects"}.Sanitize() }

// loadRegistry reads a pipeline's registry. A target without the
// registry table (plan mode on a fresh target) has an empty registry.
func loadRegistry(ctx context.Context, tx pgx.Tx, pipeline string) (*schema.Registry, error) {
	reg := schema.NewRegistry()
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, registryTable()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read schema registry: %w", err)
	}
	if !exists {
		return reg, nil
	}
	// detail came with function and view sync: read through to_jsonb so
	// that a registry made before still loads (the install adds it).
	rows, err := tx.Query(ctx, `SELECT kind, src_id, obj_schema, obj_name, former, coalesce(to_jsonb(o)->>'detail', '')
		FROM `+registryTable()+` o WHERE pipeline = $1`, pipeline)
	if err != nil {
		return nil, fmt.Errorf("read schema registry: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, id, sch, name, detail string
		var former []string
		if err := rows.Scan(&kind, &id, &sch, &name, &former, &detail); err != nil {
			return nil, err
		}
		if err := registryAdd(reg, kind, id, sch, name, former, detail); err != nil {
			return nil, fmt.Errorf("schema registry row %s %s: %w", kind, id, err)
		}
	}
	return reg, rows.Err()
}

// saveRegistry replaces a pipeline's registry with reg (in the DDL's own
// transaction, so it always describes the target as it is).
func saveRegistry(ctx context.Context, tx pgx.Tx, pipeline string, reg *schema.Registry) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+registryTable()+` WHERE pipeline = $1`, pipeline); err != nil {
		return fmt.Errorf("write schema registry: %w", err)
	}
	rows := [][]any{}
	for _, id := range slices.Sorted(maps.Keys(reg.Tables)) {
		q := reg.Tables[id]
		// A table's former names are stored as schema, name pairs.
		former := []string{}
		for _, f := range reg.FormerTables[id] {
			former = append(former, f.Schema, f.Name)
		}
		rows = append(rows, []any{pipeline, "table", strconv.FormatUint(uint64(id), 10), q.Schema, q.Name, former, ""})
	}
	for _, id := range slices.Sorted(maps.Keys(reg.Views)) {
		q := reg.Views[id]
		rows = append(rows, []any{pipeline, "view", strconv.FormatUint(uint64(id), 10), q.Schema, q.Name, []string{}, ""})
	}
	for f := range reg.Functions {
		sig := f.Ident() + "(" + f.Args + ")"
		rows = append(rows, []any{pipeline, "function", sig, f.Schema, f.Name, []string{}, f.Args})
	}
	for k, c := range reg.Columns {
		rows = append(rows, []any{pipeline, "column", fmt.Sprintf("%d.%d", k.Table, k.Num), "", c.Name, append([]string{}, c.Former...), ""})
	}
	for k := range reg.Constraints {
		rows = append(rows, []any{pipeline, "constraint", fmt.Sprintf("%d/%s", k.Table, k.Name), "", k.Name, []string{}, ""})
	}
	for k := range reg.Indexes {
		rows = append(rows, []any{pipeline, "index", fmt.Sprintf("%d/%s", k.Table, k.Name), "", k.Name, []string{}, ""})
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{Schema, "schema_objects"},
		[]string{"pipeline", "kind", "src_id", "obj_schema", "obj_name", "former", "detail"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("write schema registry: %w", err)
	}
	return nil
}

// registryAdd fills reg from one stored row.
func registryAdd(reg *schema.Registry, kind, id, sch, name string, former []string, detail string) error {
	switch kind {
	case "table", "view":
		oid, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return err
		}
		if kind == "view" {
			reg.Views[uint32(oid)] = schema.QName{Schema: sch, Name: name}
			break
		}
		reg.Tables[uint32(oid)] = schema.QName{Schema: sch, Name: name}
		for i := 0; i+1 < len(former); i += 2 {
			reg.FormerTables[uint32(oid)] = append(reg.FormerTables[uint32(oid)], schema.QName{Schema: former[i], Name: former[i+1]})
		}
	case "function":
		reg.Functions[schema.FuncID{QName: schema.QName{Schema: sch, Name: name}, Args: detail}] = true
	case "column":
		t, n, ok := strings.Cut(id, ".")
		oid, err1 := strconv.ParseUint(t, 10, 32)
		num, err2 := strconv.ParseInt(n, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return errors.New("bad column id")
		}
		reg.Columns[schema.ColumnID{Table: uint32(oid), Num: int16(num)}] = schema.RegColumn{Name: name, Former: former}
	case "constraint", "index":
		t, _, ok := strings.Cut(id, "/")
		oid, err := strconv.ParseUint(t, 10, 32)
		if !ok || err != nil {
			return errors.New("bad object id")
		}
		key := schema.ObjectID{Table: uint32(oid), Name: name}
		if kind == "index" {
			reg.Indexes[key] = true
		} else {
			reg.Constraints[key] = true
		}
	}
	return nil
}

// managedColumns answers, from the pipeline's registry, which columns of a
// target table schema sync manages: the registered columns of the
// registered table of that name (see pgapply.ManagedColumns). A table the
// registry does not know, or a target without a registry, has none.
func managedColumns(pipeline string) pgapply.ManagedColumns {
	return func(ctx context.Context, tx pgx.Tx, t batch.Table) (map[string]bool, error) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, registryTable()).Scan(&exists); err != nil {
			return nil, fmt.Errorf("read schema registry: %w", err)
		}
		out := map[string]bool{}
		if !exists {
			return out, nil
		}
		// A column's src_id is "<table src_id>.<attnum>".
		rows, err := tx.Query(ctx, `SELECT c.obj_name FROM `+registryTable()+` r
			JOIN `+registryTable()+` c ON c.pipeline = r.pipeline AND c.kind = 'column' AND split_part(c.src_id, '.', 1) = r.src_id
			WHERE r.pipeline = $1 AND r.kind = 'table' AND r.obj_schema = $2 AND r.obj_name = $3`, pipeline, t.Schema, t.Name)
		if err != nil {
			return nil, fmt.Errorf("read schema registry: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("read schema registry: %w", err)
		}
		for _, n := range names {
			out[n] = true
		}
		return out, nil
	}
}
