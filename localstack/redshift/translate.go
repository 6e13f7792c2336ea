package main

import (
	"fmt"
	"hash/fnv"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Redshift's type limits.
const (
	maxVarchar      = 65535
	maxChar         = 4096
	maxVarbyte      = 1024000
	defaultVarbyte  = 64000
	defaultVarchar  = 256 // VARCHAR without a length, and TEXT
	maxNumericPrec  = 38
	defaultNumPrec  = 18 // NUMERIC without precision is NUMERIC(18,0)
	likeConstraints = 1 << 2
)

// action is one thing the backend does for a statement.
type action struct {
	sql   string        // PostgreSQL SQL to run with the statement's parameters
	alter *alterVarchar // or: change a VARCHAR length and its byte check
}

// alterVarchar is ALTER TABLE t ALTER COLUMN c TYPE VARCHAR(n).
type alterVarchar struct {
	schema, table, column string
	n                     int
}

// translate rewrites a gated statement into what the backend runs:
// Redshift types become PostgreSQL types with Redshift's limits as byte
// checks, key constraints are dropped (Redshift does not enforce them),
// and ALTER COLUMN TYPE becomes an action. No actions means a no-op.
func translate(tree *pg.ParseResult) ([]action, error) {
	stmt := tree.Stmts[0].Stmt
	switch n := stmt.Node.(type) {
	case *pg.Node_CreateStmt:
		if err := translateCreate(n.CreateStmt); err != nil {
			return nil, err
		}
	case *pg.Node_AlterTableStmt:
		cmd := n.AlterTableStmt.Cmds[0].GetAlterTableCmd()
		switch cmd.Subtype {
		case pg.AlterTableType_AT_AddColumn:
			if err := translateColumn(cmd.Def.GetColumnDef(), nil); err != nil {
				return nil, err
			}
		case pg.AlterTableType_AT_AlterColumnType:
			limit, err := varcharLimit(cmd.Def.GetColumnDef().GetTypeName())
			if err != nil {
				return nil, err
			}
			rel := n.AlterTableStmt.Relation
			return []action{{alter: &alterVarchar{schema: rel.Schemaname, table: rel.Relname, column: cmd.Name, n: limit}}}, nil
		case pg.AlterTableType_AT_AddConstraint:
			// PRIMARY KEY, UNIQUE and FOREIGN KEY are informational in
			// Redshift; the stand-in keeps none of them.
			return nil, nil
		case pg.AlterTableType_AT_DropConstraint:
			cmd.MissingOk = true
		}
	}
	if err := walk(stmt, func(m proto.Message) error {
		if tc, ok := m.(*pg.TypeCast); ok {
			return translateType(tc.TypeName, nil)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	sql, err := pg.Deparse(tree)
	if err != nil {
		return nil, fmt.Errorf("deparse: %w", err)
	}
	return []action{{sql: sql}}, nil
}

func translateCreate(n *pg.CreateStmt) error {
	notNull := map[string]bool{}
	elts := n.TableElts[:0]
	for _, e := range n.TableElts {
		if c := e.GetConstraint(); c != nil {
			switch c.Contype {
			case pg.ConstrType_CONSTR_PRIMARY:
				for _, k := range c.Keys {
					notNull[k.GetString_().GetSval()] = true
				}
				continue
			case pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_FOREIGN:
				continue
			}
		}
		if l := e.GetTableLikeClause(); l != nil {
			// The stand-in's byte checks are part of the column types in
			// Redshift, so a LIKE copy carries them.
			l.Options |= likeConstraints
		}
		elts = append(elts, e)
	}
	n.TableElts = elts
	for _, e := range n.TableElts {
		if cd := e.GetColumnDef(); cd != nil {
			if err := translateColumn(cd, notNull); err != nil {
				return err
			}
		}
	}
	return nil
}

// translateColumn maps a column definition's type and constraints.
func translateColumn(cd *pg.ColumnDef, notNull map[string]bool) error {
	cons := cd.Constraints[:0]
	needNotNull := notNull[cd.Colname]
	hasNotNull := false
	for _, k := range cd.Constraints {
		switch k.GetConstraint().GetContype() {
		case pg.ConstrType_CONSTR_PRIMARY:
			needNotNull = true
			continue
		case pg.ConstrType_CONSTR_UNIQUE, pg.ConstrType_CONSTR_FOREIGN:
			continue
		case pg.ConstrType_CONSTR_NOTNULL:
			hasNotNull = true
		}
		cons = append(cons, k)
	}
	cd.Constraints = cons
	if needNotNull && !hasNotNull {
		cd.Constraints = append(cd.Constraints, pg.MakeNotNullConstraintNode(-1))
	}
	return translateType(cd.TypeName, cd)
}

// translateType maps a Redshift type to its PostgreSQL stand-in. With a
// column definition it also adds the byte-length check Redshift applies.
func translateType(tn *pg.TypeName, col *pg.ColumnDef) error {
	name, internal := typeName(tn)
	if internal {
		return nil
	}
	if col == nil {
		// In casts only the types PostgreSQL lacks change; VARCHAR and
		// NUMERIC keep PostgreSQL's meaning there.
		switch name {
		case "super":
			tn.Names = []*pg.Node{pg.MakeStrNode("jsonb")}
		case "varbyte", "varbinary":
			tn.Names = []*pg.Node{pg.MakeStrNode("bytea")}
			tn.Typmods = nil
		}
		return nil
	}
	switch name {
	case "text", "varchar", "nvarchar":
		limit, err := varcharLimit(tn)
		if err != nil {
			return err
		}
		setType(tn, limit, "pg_catalog", "varchar")
		addCheck(col, fmt.Sprintf("rsbytes_%d_%s", limit, hash(col.Colname)),
			cmp(octetLength(col.Colname), "<=", pg.MakeAConstIntNode(int64(limit), -1)))
	case "bpchar", "nchar":
		limit := 1
		if len(tn.Typmods) > 0 {
			v, err := typmodInt(tn.Typmods[0])
			if err != nil {
				return err
			}
			limit = v
		}
		if limit > maxChar {
			return refuse("char-length", "length for type char cannot exceed %d", maxChar)
		}
		setType(tn, limit, "pg_catalog", "bpchar")
		// Redshift's CHAR holds single-byte characters only.
		// (rtrim: PostgreSQL counts CHAR's padding in octet_length only.)
		trimmed := func() *pg.Node {
			return pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("rtrim")}, []*pg.Node{colRef(col.Colname)}, -1)
		}
		addCheck(col, "rschar1b_"+hash(col.Colname), cmp(
			pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("octet_length")}, []*pg.Node{trimmed()}, -1), "=",
			pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("char_length")}, []*pg.Node{trimmed()}, -1)))
	case "numeric":
		if len(tn.Typmods) == 0 {
			tn.Typmods = []*pg.Node{pg.MakeAConstIntNode(defaultNumPrec, -1), pg.MakeAConstIntNode(0, -1)}
		}
		p, err := typmodInt(tn.Typmods[0])
		if err != nil {
			return err
		}
		if p > maxNumericPrec {
			return refuse("numeric-precision", "NUMERIC precision %d must be between 1 and %d", p, maxNumericPrec)
		}
		if p == 19 {
			// Redshift keeps NUMERIC of up to 19 digits in 64 bits, so
			// the unscaled value stops at 2^63-1 (NUMERIC(19,8) at
			// 92233720368.54775807), one digit short of 19 nines.
			scale := 0
			if len(tn.Typmods) > 1 {
				if scale, err = typmodInt(tn.Typmods[1]); err != nil {
					return err
				}
			}
			limit := "9223372036854775807"
			if scale > 0 {
				limit = limit[:19-scale] + "." + limit[19-scale:]
			}
			abs := pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("abs")}, []*pg.Node{colRef(col.Colname)}, -1)
			addCheck(col, "rsnum64_"+hash(col.Colname), cmp(abs, "<=",
				&pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Fval{Fval: &pg.Float{Fval: limit}}, Location: -1}}}))
		}
	case "super":
		tn.Names = []*pg.Node{pg.MakeStrNode("jsonb")}
		tn.Typmods = nil
	case "varbyte", "varbinary":
		limit := defaultVarbyte
		if len(tn.Typmods) > 0 {
			v, err := typmodInt(tn.Typmods[0])
			if err != nil {
				return err
			}
			limit = v
		}
		if limit > maxVarbyte {
			return refuse("varbyte-length", "length for type varbyte cannot exceed %d", maxVarbyte)
		}
		tn.Names = []*pg.Node{pg.MakeStrNode("bytea")}
		tn.Typmods = nil
		addCheck(col, fmt.Sprintf("rsvarbyte_%d_%s", limit, hash(col.Colname)),
			cmp(octetLength(col.Colname), "<=", pg.MakeAConstIntNode(int64(limit), -1)))
	}
	return nil
}

// varcharLimit is a VARCHAR's length in bytes: 256 when none is given
// (and for TEXT), at most 65535.
func varcharLimit(tn *pg.TypeName) (int, error) {
	name, _ := typeName(tn)
	if name == "text" || len(tn.Typmods) == 0 {
		return defaultVarchar, nil
	}
	n, err := typmodInt(tn.Typmods[0])
	if err != nil {
		return 0, err
	}
	if n > maxVarchar {
		return 0, refuse("varchar-length", "length for type varchar cannot exceed %d", maxVarchar)
	}
	return n, nil
}

func typmodInt(n *pg.Node) (int, error) {
	c := n.GetAConst()
	if c == nil || c.GetIval() == nil {
		return 0, refuse("type-modifier", "type modifiers must be integer constants")
	}
	return int(c.GetIval().Ival), nil
}

func setType(tn *pg.TypeName, n int, names ...string) {
	tn.Names = tn.Names[:0]
	for _, s := range names {
		tn.Names = append(tn.Names, pg.MakeStrNode(s))
	}
	tn.Typmods = []*pg.Node{pg.MakeAConstIntNode(int64(n), -1)}
}

func hash(s string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

func colRef(name string) *pg.Node {
	return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(name)}, -1)
}

func octetLength(col string) *pg.Node {
	return pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("octet_length")}, []*pg.Node{colRef(col)}, -1)
}

func cmp(l *pg.Node, op string, r *pg.Node) *pg.Node {
	return pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode(op)}, l, r, -1)
}

func addCheck(col *pg.ColumnDef, name string, expr *pg.Node) {
	col.Constraints = append(col.Constraints, &pg.Node{Node: &pg.Node_Constraint{Constraint: &pg.Constraint{
		Contype: pg.ConstrType_CONSTR_CHECK, Conname: name, RawExpr: expr, InitiallyValid: true, Location: -1,
	}}})
}
