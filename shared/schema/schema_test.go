package schema

import (
	"errors"
	"strings"
	"testing"
)

func TestRewriteMovesOnlyQualifiedReferencesOutsideLiterals(t *testing.T) {
	moved := func(s, n string) (string, bool) {
		if (s == "public" && (n == "mood" || n == "f")) || (s == "My Schema" && n == "T") {
			return `"rep"`, true
		}
		return "", false
	}
	for _, c := range []struct{ in, want string }{
		{`'ok'::public.mood`, `'ok'::"rep".mood`},
		{`public.mood[]`, `"rep".mood[]`},
		{`public.f(x) + other.f(y)`, `"rep".f(x) + other.f(y)`},
		{`'public.mood'::text`, `'public.mood'::text`},                     // a literal
		{`E'it''s public.f \' public.f'`, `E'it''s public.f \' public.f'`}, // escapes
		{`$x$ SELECT public.f() $x$`, `$x$ SELECT public.f() $x$`},         // a dollar-quoted body
		{`"public.mood"`, `"public.mood"`},                                 // one quoted name
		{`"My Schema"."T"`, `"rep"."T"`},
		{`PUBLIC.MOOD`, `"rep".MOOD`}, // unquoted names fold to lower case
		{`a.public.mood`, `a.public.mood`},
		{`public . mood`, `public . mood`},
		{`-- public.f\npublic.f`, `-- public.f\npublic.f`},
		{`nextval('public.f'::regclass)`, `nextval('"rep".f'::regclass)`}, // a relation named in a regclass literal
		{`'public.f'::text`, `'public.f'::text`},
	} {
		if got := rewriteNames(c.in, moved); got != c.want {
			t.Errorf("rewrite(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestApplySchemaReportsEveryClashByName(t *testing.T) {
	c := &Catalog{
		Tables: []*Table{
			{QName: QName{"public", "items"}, ID: 1},
			{QName: QName{"sales", "items"}, ID: 2},
			{QName: QName{"sales", "orders"}, ID: 3, Indexes: []*Index{{Name: "by_day", Using: "btree (d)"}}},
			{QName: QName{"public", "orders_log"}, ID: 4, Indexes: []*Index{{Name: "by_day", Using: "btree (d)"}}},
		},
		Types: []*Type{{QName: QName{"public", "mood"}, Kind: KindEnum}, {QName: QName{"sales", "mood"}, Kind: KindDomain}},
	}
	m := &Mapper{ApplySchema: "rep"}
	_, err := m.Map(c)
	if !errors.Is(err, ErrClash) {
		t.Fatalf("err = %v, want ErrClash", err)
	}
	for _, want := range []string{
		"public.items (table) and sales.items (table) would all become rep.items",
		"public.by_day (index on orders_log) and sales.by_day (index on orders) would all become rep.by_day",
		"public.mood (enum) and sales.mood (domain) would all become rep.mood",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestApplySchemaMovesObjectsAndTheirReferences(t *testing.T) {
	c := &Catalog{
		Extensions: []Extension{{Name: "citext", Schema: "public"}},
		Types:      []*Type{{QName: QName{"public", "mood"}, Kind: KindEnum, Labels: []string{"a"}}},
		Sequences:  []*Sequence{{QName: QName{"sales", "n"}, Type: "bigint", OwnedTable: &QName{"sales", "t"}, OwnedCol: "id"}},
		Tables: []*Table{{QName: QName{"sales", "t"}, ID: 7, Columns: []*Column{
			{Num: 1, Name: "id", Type: "bigint", Default: "nextval('sales.n'::regclass)"},
			{Num: 2, Name: "m", Type: "public.mood", Default: "'a'::public.mood"},
			{Num: 3, Name: "e", Type: "public.citext"},
		}, Constraints: []*Constraint{{Name: "m_ok", Kind: 'c', Def: "CHECK ((m <> 'b'::public.mood))"}}}},
	}
	out, err := (&Mapper{ApplySchema: "rep"}).Map(c)
	if err != nil {
		t.Fatal(err)
	}
	tb := out.Tables[0]
	for _, c := range []struct{ got, want string }{
		{tb.QName.String(), "rep.t"},
		{out.Types[0].QName.String(), "rep.mood"},
		{out.Sequences[0].OwnedTable.String(), "rep.t"},
		{tb.Columns[1].Type, `rep.mood`},
		{tb.Columns[1].Default, `'a'::rep.mood`},
		{tb.Columns[2].Type, "public.citext"}, // extension objects stay with their extension
		{tb.Constraints[0].Def, `CHECK ((m <> 'b'::rep.mood))`},
		{tb.Columns[0].Default, `nextval('rep.n'::regclass)`},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}

func col(num int16, name, typ string) *Column { return &Column{Num: num, Name: name, Type: typ} }

func TestDiffRendersOrderedIdempotentDDL(t *testing.T) {
	cur := &Catalog{
		Schemas: []string{"public"},
		Types:   []*Type{{QName: QName{"public", "mood"}, Kind: KindEnum, Labels: []string{"sad", "happy"}}},
		Tables: []*Table{{QName: QName{"public", "t"}, ID: 500, Kind: 'r',
			Columns:     []*Column{col(1, "id", "integer"), col(2, "old", "text"), col(3, "gone", "text"), col(4, "mine", "text"), col(5, "n", "integer")},
			Constraints: []*Constraint{{Name: "t_pkey", Kind: 'p', Def: "PRIMARY KEY (id)"}},
			Indexes:     []*Index{{Name: "t_old", Using: "btree (old)"}, {Name: "local_only", Using: "btree (mine)"}},
		}},
	}
	reg := NewRegistry()
	reg.Tables[42] = QName{"public", "t"}
	for i, n := range []string{"id", "old", "gone", "", "n"} {
		if n != "" {
			reg.Columns[ColumnID{42, int16(i + 1)}] = RegColumn{Name: n}
		}
	}
	reg.Indexes[ObjectID{42, "t_old"}] = true
	reg.Constraints[ObjectID{42, "t_pkey"}] = true
	des := &Catalog{
		Schemas: []string{"public"},
		Types:   []*Type{{QName: QName{"public", "mood"}, Kind: KindEnum, Labels: []string{"sad", "ok", "happy", "ecstatic"}}},
		Tables: []*Table{{QName: QName{"public", "t"}, ID: 42, Kind: 'r',
			Columns:     []*Column{col(1, "id", "integer"), col(2, "renamed", "text"), col(5, "n", "bigint"), {Num: 6, Name: "m", Type: "public.mood", NotNull: true, Default: "'ok'::public.mood"}},
			Constraints: []*Constraint{{Name: "t_pkey", Kind: 'p', Def: "PRIMARY KEY (id)"}},
			Indexes:     []*Index{{Name: "t_renamed", Using: "btree (renamed) WHERE (n > 0)"}},
		}, {QName: QName{"public", "u"}, ID: 43, Kind: 'r', Columns: []*Column{col(1, "id", "integer"), {Num: 2, Name: "t_id", Type: "integer", NotNull: true}},
			Constraints: []*Constraint{{Name: "u_t", Kind: 'f', Def: "FOREIGN KEY (t_id) REFERENCES public.t(id)", Refs: &QName{"public", "t"}}}}},
	}
	plan := Diff(des, cur, reg)
	want := `ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'ok' AFTER 'sad';
ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'ecstatic' AFTER 'happy';
DROP INDEX IF EXISTS "public"."t_old";
CREATE TABLE "public"."u" (
    "id" integer,
    "t_id" integer NOT NULL
);
ALTER TABLE "public"."t" DROP COLUMN IF EXISTS "gone";
ALTER TABLE "public"."t" RENAME COLUMN "old" TO "renamed";
ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE bigint USING "n"::bigint;
ALTER TABLE "public"."t" ADD COLUMN "m" public.mood DEFAULT 'ok'::public.mood NOT NULL;
CREATE INDEX "t_renamed" ON "public"."t" USING btree (renamed) WHERE (n > 0);
ALTER TABLE "public"."u" ADD CONSTRAINT "u_t" FOREIGN KEY (t_id) REFERENCES public.t(id);
`
	if got := plan.SQL(); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if got := plan.Registry.Columns[ColumnID{42, 2}]; got.Name != "renamed" || len(got.Former) != 1 || got.Former[0] != "old" {
		t.Errorf("registry keeps column 2 as %+v, want renamed with former name old", got)
	}
	if _, ok := plan.Registry.Columns[ColumnID{42, 3}]; ok {
		t.Errorf("registry still lists the dropped column")
	}
	if !plan.Registry.Indexes[ObjectID{42, "t_renamed"}] || plan.Registry.Indexes[ObjectID{42, "local_only"}] {
		t.Errorf("registry indexes = %v, want t_renamed only (local_only is the target's own)", plan.Registry.Indexes)
	}
}

func TestDiffSwapsColumnNamesThroughTemporaryNames(t *testing.T) {
	cur := &Catalog{Tables: []*Table{{QName: QName{"s", "t"}, ID: 9, Kind: 'r', Columns: []*Column{col(1, "a", "int"), col(2, "b", "int")}}}}
	reg := NewRegistry()
	reg.Tables[1] = QName{"s", "t"}
	reg.Columns[ColumnID{1, 1}] = RegColumn{Name: "a"}
	reg.Columns[ColumnID{1, 2}] = RegColumn{Name: "b"}
	des := &Catalog{Schemas: []string{"s"}, Tables: []*Table{{QName: QName{"s", "t"}, ID: 1, Kind: 'r', Columns: []*Column{col(1, "b", "int"), col(2, "a", "int")}}}}
	cur.Schemas = []string{"s"}
	want := `ALTER TABLE "s"."t" RENAME COLUMN "a" TO "pgferry_rename_1";
ALTER TABLE "s"."t" RENAME COLUMN "b" TO "pgferry_rename_2";
ALTER TABLE "s"."t" RENAME COLUMN "pgferry_rename_1" TO "b";
ALTER TABLE "s"."t" RENAME COLUMN "pgferry_rename_2" TO "a";
`
	if got := Diff(des, cur, reg).SQL(); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestDiffRenamesATableByIdentityAndDropsOnlyManagedTables(t *testing.T) {
	cur := &Catalog{Schemas: []string{"s"}, Tables: []*Table{
		{QName: QName{"s", "old_name"}, Kind: 'r', Columns: []*Column{col(1, "id", "int")}},
		{QName: QName{"s", "dropped"}, Kind: 'r'},
		{QName: QName{"s", "target_only"}, Kind: 'r'},
	}}
	reg := NewRegistry()
	reg.Tables[1], reg.Tables[2] = QName{"s", "old_name"}, QName{"s", "dropped"}
	reg.Columns[ColumnID{1, 1}] = RegColumn{Name: "id"}
	des := &Catalog{Schemas: []string{"s"}, Tables: []*Table{{QName: QName{"s", "new_name"}, ID: 1, Kind: 'r', Columns: []*Column{col(1, "id", "int")}}}}
	want := `DROP TABLE IF EXISTS "s"."dropped";
ALTER TABLE "s"."old_name" RENAME TO "new_name";
`
	if got := Diff(des, cur, reg).SQL(); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestSplitUsingSkipsQuotedNames(t *testing.T) {
	got, ok := SplitUsing(`CREATE INDEX "a USING b" ON public."x USING y" USING btree (lower(" USING "))`)
	if !ok || got != `btree (lower(" USING "))` {
		t.Fatalf("SplitUsing = %q, %v", got, ok)
	}
}
