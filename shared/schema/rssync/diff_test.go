package rssync

import (
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/redshift/rstype"
	"github.com/pgferry/pgferry/shared/schema"
)

var opts = rstype.Options{NumericPrecision: 19, NumericScale: 8, JSONSuper: true}

func catalog(cols ...*schema.Column) *schema.Catalog {
	return &schema.Catalog{Tables: []*schema.Table{{QName: schema.QName{Schema: "Shop", Name: "Orders"}, ID: 100, Kind: 'r',
		Columns: cols, Constraints: []*schema.Constraint{{Name: "orders_pkey", Kind: 'p', Def: `PRIMARY KEY ("Id")`}}}}}
}

func TestDiffPureCases(t *testing.T) {
	des, warns, err := shape(catalog(
		&schema.Column{Num: 1, Name: "Id", Type: "integer"},
		&schema.Column{Num: 2, Name: "note", Type: "character varying(5)"},
		&schema.Column{Num: 3, Name: "n", Type: "numeric"},
	), opts)
	if err != nil || len(warns) != 0 {
		t.Fatalf("shape: %v %v", err, warns)
	}
	q := schema.QName{Schema: "shop", Name: "orders"}
	// The target has the table (names folded), a wider note, a column
	// added by hand, and no registry: the table and its columns are
	// adopted, the hand-made column is left alone, a narrower source
	// VARCHAR needs nothing.
	cur := &current{schemas: map[string]bool{"shop": true}, tables: map[schema.QName]*curTable{q: {q: q, cols: []curCol{
		{"id", "integer"}, {"note", "varchar(100)"}, {"n", "numeric(19,8)"}, {"by_hand", "integer"},
	}}}}
	p := diff(des, cur, nil)
	if got := p.plan().SQL(); got != "" {
		t.Fatalf("plan: %q", got)
	}
	if p.reg.Tables[100] != q || len(p.reg.Columns) != 3 {
		t.Fatalf("registry: %+v", p.reg)
	}
	// With that registry, the source drops note: it goes; by_hand stays.
	des[0].cols = des[0].cols[:1]
	des[0].cols = append(des[0].cols, desCol{num: 3, name: "n", typ: "numeric(19,8)"})
	p2 := diff(des, cur, p.reg)
	if got := p2.plan().SQL(); got != `ALTER TABLE "shop"."orders" DROP COLUMN "note";`+"\n" {
		t.Fatalf("plan: %q", got)
	}
	// Widening is a unit of its own, outside the transaction, last.
	des[0].cols = append(des[0].cols, desCol{num: 2, name: "note", typ: "varchar(200)"})
	p3 := diff(des, cur, p.reg)
	last := p3.units[len(p3.units)-1]
	if len(p3.units) != 1 || !last.outTx || !strings.Contains(last.stmts[0], `ALTER COLUMN "note" TYPE varchar(200)`) {
		t.Fatalf("units: %+v", p3.units)
	}
}

func TestShapeRefusesNamesThatFoldTogether(t *testing.T) {
	_, _, err := shape(catalog(&schema.Column{Num: 1, Name: "Id", Type: "integer"}, &schema.Column{Num: 2, Name: "id", Type: "integer"}), opts)
	if err == nil || !strings.Contains(err.Error(), "folds names to lower case") {
		t.Fatalf("err = %v", err)
	}
}
