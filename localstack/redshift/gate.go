package main

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// gateCtx is where a statement runs.
type gateCtx struct {
	inBatch bool // one of several statements of a BatchExecuteStatement
	inTx    bool // inside a transaction block (a batch, or BEGIN in a session)
}

// walk visits m and every message below it, parents first, until visit
// returns an error.
func walk(m proto.Message, visit func(proto.Message) error) error {
	if err := visit(m); err != nil {
		return err
	}
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() || fd.Message() == nil:
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walk(l.Get(i).Message().Interface(), visit)
			}
		default:
			err = walk(v.Message().Interface(), visit)
		}
		return err == nil
	})
	return err
}

// Column types Redshift has (PostgreSQL spellings after parsing), and
// those it lacks, by the rule that refuses them.
var (
	columnTypes = set("int2", "int4", "int8", "numeric", "float4", "float8", "bool", "bpchar", "varchar",
		"nvarchar", "nchar", "text", "date", "time", "timetz", "timestamp", "timestamptz", "super", "varbyte", "varbinary")
	missingTypes = map[string]string{
		"json": "json-type", "jsonb": "json-type",
		"uuid": "uuid-type",
		"inet": "network-type", "cidr": "network-type", "macaddr": "network-type", "macaddr8": "network-type",
		"int4range": "range-type", "int8range": "range-type", "numrange": "range-type", "tsrange": "range-type",
		"tstzrange": "range-type", "daterange": "range-type", "int4multirange": "range-type", "int8multirange": "range-type",
		"nummultirange": "range-type", "tsmultirange": "range-type", "tstzmultirange": "range-type", "datemultirange": "range-type",
		"bytea":  "bytea-type",
		"serial": "serial", "bigserial": "serial", "smallserial": "serial", "serial2": "serial", "serial4": "serial", "serial8": "serial",
		"money": "unsupported-type", "xml": "unsupported-type", "bit": "unsupported-type", "varbit": "unsupported-type",
		"tsvector": "unsupported-type", "tsquery": "unsupported-type", "point": "unsupported-type", "line": "unsupported-type",
		"lseg": "unsupported-type", "box": "unsupported-type", "path": "unsupported-type", "polygon": "unsupported-type",
		"circle": "unsupported-type", "oid": "unsupported-type", "regclass": "unsupported-type", "regtype": "unsupported-type",
		"regproc": "unsupported-type", "name": "unsupported-type", "pg_lsn": "unsupported-type", "txid_snapshot": "unsupported-type",
		"hstore": "unsupported-type", "citext": "unsupported-type",
	}
	notEmulatedTypes = set("geometry", "geography", "hllsketch")

	// PostgreSQL functions Redshift lacks, by rule.
	missingFuncs = map[string]string{
		"pg_advisory_lock": "advisory-lock", "pg_advisory_xact_lock": "advisory-lock", "pg_try_advisory_lock": "advisory-lock",
		"pg_try_advisory_xact_lock": "advisory-lock", "pg_advisory_unlock": "advisory-lock", "pg_advisory_unlock_all": "advisory-lock",
		"pg_advisory_lock_shared": "advisory-lock", "pg_advisory_xact_lock_shared": "advisory-lock",
		"pg_try_advisory_lock_shared": "advisory-lock", "pg_try_advisory_xact_lock_shared": "advisory-lock",
		"pg_advisory_unlock_shared": "advisory-lock",
		"nextval":                   "sequence", "currval": "sequence", "setval": "sequence", "lastval": "sequence",
		"array_agg": "array", "array_append": "array", "array_prepend": "array", "array_cat": "array", "array_length": "array",
		"array_position": "array", "array_positions": "array", "array_remove": "array", "array_replace": "array",
		"array_to_string": "array", "array_dims": "array", "array_lower": "array", "array_upper": "array",
		"array_ndims": "array", "array_fill": "array", "unnest": "array", "string_to_array": "array", "cardinality": "array",
		"regexp_split_to_array": "array", "regexp_split_to_table": "array",
		"generate_series": "leader-node-function",
		"string_agg":      "missing-function",
		"to_json":         "json-function", "to_jsonb": "json-function", "row_to_json": "json-function", "json_agg": "json-function",
		"jsonb_agg": "json-function", "json_build_object": "json-function", "jsonb_build_object": "json-function",
		"json_build_array": "json-function", "jsonb_build_array": "json-function", "json_object_agg": "json-function",
		"jsonb_object_agg": "json-function", "jsonb_set": "json-function", "jsonb_insert": "json-function",
		"jsonb_strip_nulls": "json-function", "jsonb_pretty": "json-function",
		"gen_random_uuid": "uuid-type", "uuid_generate_v4": "uuid-type",
		"txid_current": "missing-function", "pg_current_xact_id": "missing-function", "pg_current_wal_lsn": "missing-function",
		"pg_logical_emit_message": "missing-function", "pg_sleep": "missing-function", "pg_notify": "listen-notify",
	}
	// Leader-node-only functions: Redshift refuses them in a statement
	// that touches a table (a column DEFAULT included).
	leaderOnlyFuncs = set("now", "age", "isfinite")
	// SET parameters Redshift has.
	settable = set("datestyle", "extra_float_digits", "search_path", "statement_timeout", "timezone", "query_group",
		"wlm_query_slot_count", "enable_result_cache_for_session", "analyze_threshold_percent", "describe_field_name_in_uppercase",
		"max_cursor_result_set_size", "json_serialization_enable", "json_serialization_parse_nested_strings",
		"enable_case_sensitive_identifier", "mv_enable_aqmv_for_session", "seed", "application_name",
		"default_transaction_read_only", "error_on_nondeterministic_update", "auto_mv")
)

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// typeName is a TypeName's last name, lower case, and whether it was the
// unqualified PostgreSQL "char" (one byte), which Redshift lacks.
func typeName(tn *pg.TypeName) (name string, internalChar bool) {
	if tn == nil || len(tn.Names) == 0 {
		return "", false
	}
	name = strings.ToLower(tn.Names[len(tn.Names)-1].GetString_().GetSval())
	return name, name == "char" && len(tn.Names) == 1
}

func funcName(names []*pg.Node) string {
	if len(names) == 0 {
		return ""
	}
	return strings.ToLower(names[len(names)-1].GetString_().GetSval())
}

// checkColumnType refuses a column type Redshift lacks.
func checkColumnType(col string, tn *pg.TypeName) error {
	name, internal := typeName(tn)
	switch {
	case len(tn.ArrayBounds) > 0:
		return refuse("array-type", "Column %q has unsupported type %q: Redshift has no array types (use SUPER)", col, name+"[]")
	case internal:
		return refuse("unsupported-type", `Column %q has unsupported type "char" (the single-byte internal type)`, col)
	case name == "interval":
		return refuse("interval-column", "Column %q has unsupported type interval (store it as VARCHAR)", col)
	case missingTypes[name] != "":
		return refuse(missingTypes[name], "Column %q has unsupported type %q", col, name)
	case notEmulatedTypes[name]:
		return unsupported("type-"+name, "column type %s", name)
	case !columnTypes[name]:
		return refuse("unknown-type", "type %q does not exist", name)
	}
	return nil
}

func checkCastType(tn *pg.TypeName) error {
	name, internal := typeName(tn)
	switch {
	case len(tn.ArrayBounds) > 0:
		return refuse("array-type", "cannot cast to %q: Redshift has no array types", name+"[]")
	case internal:
		return refuse("unsupported-type", `type "char" (the single-byte internal type) is not supported`)
	case missingTypes[name] != "":
		return refuse(missingTypes[name], "type %q is not supported by Redshift", name)
	}
	return nil
}

// touchesTable reports whether a statement names a relation.
func touchesTable(stmt *pg.Node) bool {
	found := false
	_ = walk(stmt, func(m proto.Message) error {
		switch m.(type) {
		case *pg.RangeVar, *pg.CreateStmt, *pg.AlterTableStmt:
			found = true
		}
		return nil
	})
	return found
}

// gate returns a refusal if Redshift would refuse stmt (or the stand-in
// cannot emulate it), nil otherwise. It does not change stmt.
func gate(stmt *pg.Node, c gateCtx) error {
	tableCtx := touchesTable(stmt)
	valuesOK := map[*pg.SelectStmt]bool{}
	return walk(stmt, func(m proto.Message) error {
		switch n := m.(type) {
		case *pg.InsertStmt:
			if n.OnConflictClause != nil {
				return refuse("on-conflict", `syntax error at or near "ON": INSERT … ON CONFLICT is not supported (Redshift has no upsert; use DELETE … USING then INSERT, or MERGE)`)
			}
			if len(n.ReturningList) > 0 {
				return refuse("returning", `syntax error at or near "RETURNING": Redshift has no RETURNING clause`)
			}
			if n.WithClause != nil {
				return refuse("with-before-insert", "WITH before INSERT is not supported (put the WITH inside the INSERT's SELECT)")
			}
			if n.Override != pg.OverridingKind_OVERRIDING_NOT_SET && n.Override != pg.OverridingKind_OVERRIDING_KIND_UNDEFINED {
				return refuse("identity", "OVERRIDING … VALUE is not supported")
			}
			if s := n.SelectStmt.GetSelectStmt(); s != nil {
				valuesOK[s] = true
			}
		case *pg.UpdateStmt:
			if len(n.ReturningList) > 0 {
				return refuse("returning", `syntax error at or near "RETURNING": Redshift has no RETURNING clause`)
			}
		case *pg.DeleteStmt:
			if len(n.ReturningList) > 0 {
				return refuse("returning", `syntax error at or near "RETURNING": Redshift has no RETURNING clause`)
			}
			if n.Relation != nil && n.Relation.Alias != nil {
				return refuse("delete-alias", "DELETE does not take an alias for its target table in Redshift")
			}
		case *pg.MergeStmt:
			return checkMerge(n)
		case *pg.CommonTableExpr:
			switch n.Ctequery.GetNode().(type) {
			case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
				return refuse("data-modifying-cte", "a WITH query must be a SELECT in Redshift")
			}
			if n.Ctematerialized != pg.CTEMaterialize_CTEMaterializeDefault && n.Ctematerialized != pg.CTEMaterialize_CTEMATERIALIZE_UNDEFINED {
				return refuse("cte-materialized", "WITH … AS [NOT] MATERIALIZED is not supported")
			}
		case *pg.SelectStmt:
			if len(n.LockingClause) > 0 {
				return refuse("for-update", `SELECT … FOR UPDATE/SHARE is not supported (use LOCK table)`)
			}
			for _, d := range n.DistinctClause {
				if d.GetNode() != nil {
					return refuse("distinct-on", "SELECT DISTINCT ON is not supported")
				}
			}
			if len(n.ValuesLists) > 0 && !valuesOK[n] {
				return refuse("values-as-table", "VALUES used as a table is not supported (only INSERT … VALUES)")
			}
			if n.IntoClause != nil {
				if err := checkInto(n.IntoClause); err != nil {
					return err
				}
			}
		case *pg.CreateStmt:
			if err := checkCreate(n); err != nil {
				return err
			}
		case *pg.CreateTableAsStmt:
			if n.Objtype == pg.ObjectType_OBJECT_MATVIEW {
				return unsupported("materialized-view", "CREATE MATERIALIZED VIEW")
			}
			if err := checkInto(n.Into); err != nil {
				return err
			}
		case *pg.ColumnDef:
			if n.TypeName != nil {
				if err := checkColumnType(n.Colname, n.TypeName); err != nil {
					return err
				}
			}
			for _, cn := range n.Constraints {
				if err := checkConstraint(cn.GetConstraint()); err != nil {
					return err
				}
			}
		case *pg.TypeCast:
			if err := checkCastType(n.TypeName); err != nil {
				return err
			}
		case *pg.IndexStmt:
			return refuse("create-index", "CREATE INDEX is not supported: Redshift has no indexes (use sort keys)")
		case *pg.CreateSeqStmt, *pg.AlterSeqStmt:
			return refuse("sequence", "sequences are not supported in Redshift (use an IDENTITY column)")
		case *pg.DropStmt:
			switch n.RemoveType {
			case pg.ObjectType_OBJECT_SEQUENCE:
				return refuse("sequence", "sequences are not supported in Redshift")
			case pg.ObjectType_OBJECT_INDEX:
				return refuse("create-index", "Redshift has no indexes")
			case pg.ObjectType_OBJECT_TYPE, pg.ObjectType_OBJECT_DOMAIN:
				return refuse("user-type", "user-defined types are not supported")
			case pg.ObjectType_OBJECT_TRIGGER:
				return refuse("trigger", "triggers are not supported")
			}
		case *pg.FuncCall:
			name := funcName(n.Funcname)
			if rule := missingFuncs[name]; rule != "" {
				return refuse(rule, "function %s is not supported by Redshift", name)
			}
			if leaderOnlyFuncs[name] && tableCtx {
				return refuse("leader-node-function", "%s() is a leader-node-only function; Redshift refuses it in a statement that uses a table (use GETDATE() or SYSDATE)", name)
			}
			if n.AggFilter != nil {
				return refuse("aggregate-filter", "aggregate FILTER (WHERE …) is not supported")
			}
		case *pg.SQLValueFunction:
			switch n.Op {
			case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
				pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N,
				pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
				if tableCtx {
					return refuse("leader-node-function", "CURRENT_TIMESTAMP/CURRENT_TIME/LOCALTIME are leader-node-only; Redshift refuses them in a statement that uses a table (use GETDATE() or SYSDATE)")
				}
			}
		case *pg.A_ArrayExpr:
			return refuse("array", "ARRAY[…] constructors are not supported: Redshift has no array types")
		case *pg.A_Expr:
			switch n.Kind {
			case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
				return refuse("any-array", "= ANY(array) / ALL(array) is not supported (use IN (…) or a join)")
			case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
				return refuse("is-distinct-from", "IS [NOT] DISTINCT FROM is not supported (spell out the NULL cases)")
			}
		case *pg.AlterTableStmt:
			return checkAlter(n, c)
		case *pg.AlterObjectSchemaStmt:
			return refuse("set-schema", "ALTER … SET SCHEMA is not supported")
		case *pg.VariableSetStmt:
			name := strings.ToLower(n.Name)
			if name == "session_replication_role" {
				return refuse("session-replication-role", `unrecognized configuration parameter "session_replication_role"`)
			}
			if n.Kind != pg.VariableSetKind_VAR_RESET_ALL && name != "" && !settable[name] && !strings.HasPrefix(name, "transaction") {
				return refuse("set-parameter", "unrecognized configuration parameter %q", name)
			}
		case *pg.TransactionStmt:
			switch n.Kind {
			case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT, pg.TransactionStmtKind_TRANS_STMT_RELEASE,
				pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
				return refuse("savepoint", "SAVEPOINT, RELEASE and ROLLBACK TO SAVEPOINT are not supported")
			case pg.TransactionStmtKind_TRANS_STMT_PREPARE, pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
				pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
				return refuse("two-phase-commit", "PREPARE TRANSACTION is not supported")
			}
			if c.inBatch {
				return unsupported("transaction-control-in-batch", "BEGIN/COMMIT/ROLLBACK inside BatchExecuteStatement (the batch is already one transaction)")
			}
		case *pg.TruncateStmt:
			if c.inTx {
				return unsupported("truncate-in-transaction", "TRUNCATE inside a transaction block: Redshift commits the open transaction when it runs TRUNCATE, so the batch would not be atomic")
			}
		case *pg.LockStmt:
			if n.Mode != 8 || n.Nowait {
				return refuse("lock-mode", "LOCK takes no lock mode and no NOWAIT in Redshift")
			}
		case *pg.CopyStmt:
			if n.IsFrom {
				return refuse("copy-from-stdin", "COPY from STDIN or a local file is not supported: Redshift loads from S3, EMR, DynamoDB or SSH")
			}
			return refuse("copy-to", "COPY … TO is not supported (use UNLOAD)")
		case *pg.CreateTrigStmt, *pg.CreateEventTrigStmt, *pg.RuleStmt:
			return refuse("trigger", "triggers and rules are not supported")
		case *pg.ListenStmt, *pg.NotifyStmt, *pg.UnlistenStmt:
			return refuse("listen-notify", "LISTEN/NOTIFY/UNLISTEN are not supported")
		case *pg.DiscardStmt:
			return refuse("discard", "DISCARD is not supported")
		case *pg.CreateExtensionStmt:
			return refuse("extension", "CREATE EXTENSION is not supported")
		case *pg.CreateEnumStmt:
			return refuse("enum-type", "enum types are not supported")
		case *pg.CreateRangeStmt, *pg.CompositeTypeStmt, *pg.CreateDomainStmt:
			return refuse("user-type", "user-defined types are not supported")
		case *pg.CreatePublicationStmt, *pg.CreateSubscriptionStmt, *pg.AlterPublicationStmt:
			return refuse("replication", "publications and subscriptions are not supported")
		case *pg.CreateForeignTableStmt:
			return refuse("foreign-table", "foreign tables are not supported (use external tables)")
		case *pg.DoStmt:
			return refuse("do-block", "DO blocks are not supported")
		case *pg.CreateFunctionStmt:
			return unsupported("create-function", "CREATE FUNCTION/PROCEDURE")
		case *pg.RangeTableSample:
			return refuse("tablesample", "TABLESAMPLE is not supported")
		case *pg.XmlExpr, *pg.XmlSerialize, *pg.RangeTableFunc:
			return refuse("xml", "XML functions are not supported")
		case *pg.JsonObjectConstructor, *pg.JsonArrayConstructor, *pg.JsonArrayQueryConstructor, *pg.JsonObjectAgg,
			*pg.JsonArrayAgg, *pg.JsonIsPredicate, *pg.JsonFuncExpr, *pg.JsonTable, *pg.JsonParseExpr, *pg.JsonScalarExpr,
			*pg.JsonSerializeExpr:
			return refuse("json-function", "SQL/JSON syntax is not supported (Redshift uses SUPER and PartiQL)")
		}
		return nil
	})
}

func checkInto(into *pg.IntoClause) error {
	if into == nil {
		return nil
	}
	if into.OnCommit != pg.OnCommitAction_ONCOMMIT_NOOP && into.OnCommit != pg.OnCommitAction_ON_COMMIT_ACTION_UNDEFINED {
		return refuse("on-commit", `syntax error at or near "ON": temporary tables take no ON COMMIT clause in Redshift (drop them explicitly)`)
	}
	if into.SkipData {
		return refuse("with-no-data", "CREATE TABLE … AS … WITH NO DATA is not supported (use CREATE TABLE … (LIKE …))")
	}
	if into.Rel != nil && into.Rel.Relpersistence == "u" {
		return refuse("unlogged", "UNLOGGED tables are not supported")
	}
	return nil
}

func checkCreate(n *pg.CreateStmt) error {
	switch {
	case n.Oncommit != pg.OnCommitAction_ONCOMMIT_NOOP && n.Oncommit != pg.OnCommitAction_ON_COMMIT_ACTION_UNDEFINED:
		return refuse("on-commit", `syntax error at or near "ON": temporary tables take no ON COMMIT clause in Redshift (drop them explicitly)`)
	case len(n.InhRelations) > 0:
		return refuse("inherits", "table inheritance is not supported")
	case n.Partspec != nil || n.Partbound != nil:
		return refuse("partition", "declarative partitioning is not supported")
	case n.Relation != nil && n.Relation.Relpersistence == "u":
		return refuse("unlogged", "UNLOGGED tables are not supported")
	case len(n.Options) > 0:
		return refuse("storage-parameters", "CREATE TABLE … WITH (storage parameters) is not supported")
	case n.Tablespacename != "":
		return refuse("tablespace", "tablespaces are not supported")
	case n.OfTypename != nil:
		return refuse("user-type", "typed tables are not supported")
	}
	for _, e := range n.TableElts {
		if c := e.GetConstraint(); c != nil {
			if err := checkConstraint(c); err != nil {
				return err
			}
		}
		if l := e.GetTableLikeClause(); l != nil && l.Options&^(1<<3) != 0 {
			return refuse("like-options", "LIKE takes only INCLUDING/EXCLUDING DEFAULTS in Redshift")
		}
	}
	return nil
}

func checkConstraint(c *pg.Constraint) error {
	if c == nil {
		return nil
	}
	switch c.Contype {
	case pg.ConstrType_CONSTR_CHECK:
		return refuse("check-constraint", "CHECK constraints are not supported")
	case pg.ConstrType_CONSTR_EXCLUSION:
		return refuse("exclusion-constraint", "EXCLUDE constraints are not supported")
	case pg.ConstrType_CONSTR_IDENTITY:
		return refuse("identity", "GENERATED … AS IDENTITY (PostgreSQL syntax) is not supported; Redshift spells it IDENTITY(seed, step)")
	case pg.ConstrType_CONSTR_GENERATED:
		return refuse("generated-column", "generated columns are not supported")
	}
	return nil
}

// checkAlter applies Redshift's ALTER TABLE rules: one action per
// statement, only the actions Redshift has, and a column type change only
// to a VARCHAR length and only outside a transaction block.
func checkAlter(n *pg.AlterTableStmt, c gateCtx) error {
	if len(n.Cmds) > 1 {
		adds := 0
		for _, cmd := range n.Cmds {
			if cmd.GetAlterTableCmd().GetSubtype() == pg.AlterTableType_AT_AddColumn {
				adds++
			}
		}
		if adds > 1 {
			return refuse("multiple-add-column", "ALTER TABLE ADD COLUMN takes one column per statement in Redshift")
		}
		return refuse("multiple-alter-actions", "ALTER TABLE takes one action per statement in Redshift")
	}
	for _, cn := range n.Cmds {
		cmd := cn.GetAlterTableCmd()
		switch cmd.GetSubtype() {
		case pg.AlterTableType_AT_AddColumn:
			for _, k := range cmd.GetDef().GetColumnDef().GetConstraints() {
				switch k.GetConstraint().GetContype() {
				case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_IDENTITY:
					return refuse("add-column-constraint", "ADD COLUMN cannot add a PRIMARY KEY, UNIQUE or IDENTITY column in Redshift")
				}
			}
		case pg.AlterTableType_AT_AlterColumnType:
			def := cmd.GetDef().GetColumnDef()
			if c.inTx {
				return refuse("alter-type-in-transaction", "ALTER TABLE ALTER COLUMN cannot run inside a transaction block")
			}
			if def.GetRawDefault() != nil {
				return refuse("alter-type-using", "ALTER COLUMN … TYPE … USING is not supported")
			}
			if name, _ := typeName(def.GetTypeName()); name != "varchar" && name != "nvarchar" {
				return refuse("alter-type-not-varchar", "ALTER COLUMN TYPE only changes the length of a VARCHAR column in Redshift (target type %s)", name)
			}
		case pg.AlterTableType_AT_DropColumn, pg.AlterTableType_AT_DropConstraint, pg.AlterTableType_AT_ChangeOwner:
		case pg.AlterTableType_AT_AddConstraint:
			return checkConstraint(cmd.GetDef().GetConstraint())
		default:
			return refuse("alter-action", "this ALTER TABLE action (%s) is not supported by Redshift", strings.TrimPrefix(cmd.GetSubtype().String(), "AT_"))
		}
	}
	return nil
}

// checkMerge applies Redshift's MERGE limits.
func checkMerge(n *pg.MergeStmt) error {
	if n.WithClause != nil {
		return refuse("merge-with", "WITH before MERGE is not supported")
	}
	if n.SourceRelation.GetRangeVar() == nil {
		return refuse("merge-source", "the MERGE source must be a table, not a subquery or view expression")
	}
	if len(n.ReturningList) > 0 {
		return refuse("returning", "MERGE … RETURNING is not supported")
	}
	matched, notMatched := 0, 0
	for _, w := range n.MergeWhenClauses {
		mw := w.GetMergeWhenClause()
		if mw.Condition != nil {
			return refuse("merge-clause", "MERGE WHEN clauses take no AND condition in Redshift")
		}
		switch mw.MatchKind {
		case pg.MergeMatchKind_MERGE_WHEN_MATCHED:
			if mw.CommandType != pg.CmdType_CMD_UPDATE && mw.CommandType != pg.CmdType_CMD_DELETE {
				return refuse("merge-clause", "WHEN MATCHED takes UPDATE or DELETE")
			}
			matched++
		case pg.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_TARGET:
			if mw.CommandType != pg.CmdType_CMD_INSERT {
				return refuse("merge-clause", "WHEN NOT MATCHED takes INSERT")
			}
			notMatched++
		default:
			return refuse("merge-clause", "WHEN NOT MATCHED BY SOURCE is not supported")
		}
	}
	if matched != 1 || notMatched != 1 {
		return refuse("merge-clause", "MERGE takes exactly one WHEN MATCHED (UPDATE or DELETE) and one WHEN NOT MATCHED (INSERT) clause in Redshift")
	}
	return nil
}
