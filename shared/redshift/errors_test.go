package redshift

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/apply"
)

// Redshift reports through the Data API only text; the same failure over
// pgx carries a SQLSTATE. Both must land in the same class.
func TestErrorsAreClassifiedOnceForBothAdapters(t *testing.T) {
	cases := []struct {
		name, code, msg string
		want            apply.Class
		behind          bool
	}{
		{"serializable isolation violation", "", "ERROR: 1023 DETAIL: Serializable isolation violation on table - 102843, transactions forming the cycle are: 4401, 4400 (pid:1234)", apply.Transient, false},
		{"1023 over pgx", "XX000", "1023", apply.Transient, false},
		{"snapshot isolation conflict", "", "ERROR: could not complete because of conflict with concurrent transaction", apply.Transient, false},
		{"postgres serialization failure", "40001", "could not serialize access due to concurrent update", apply.Transient, false},
		{"deadlock", "40P01", "deadlock detected", apply.Transient, false},
		{"missing table", "", `ERROR: relation "public.orders" does not exist`, apply.Failed, true},
		{"missing column", "", `ERROR: column "note" of relation "orders" does not exist`, apply.Failed, true},
		{"missing column, pgx", "42703", `column "note" does not exist`, apply.Failed, true},
		{"missing schema", "3F000", `schema "shop" does not exist`, apply.Failed, true},
		{"value too long is the batch's", "", "ERROR: value too long for type character varying(1023)", apply.Failed, false},
		{"invalid digit is the batch's", "", "ERROR: Invalid digit, Value '1023x', Pos 4, Type: Integer", apply.Failed, false},
		{"COPY load error is the batch's", "XX000", "Load into table 'pgferry_stage_1' failed. Check 'sys_load_error_detail' system table for details.", apply.Failed, false},
		{"division by zero is the batch's", "22012", "division by zero", apply.Failed, false},
	}
	for _, c := range cases {
		err := fmt.Errorf("rsapply: batch 7: %w", newError(3, "DELETE …", c.code, c.msg, nil))
		if got := apply.Classify(err); got != c.want {
			t.Errorf("%s: class %v, want %v", c.name, got, c.want)
		}
		if got := errors.Is(err, apply.ErrSchemaBehind); got != c.behind {
			t.Errorf("%s: schema behind %v, want %v", c.name, got, c.behind)
		}
	}
	// A pgx error keeps its *pgconn.PgError for callers that want the detail.
	pe := &pgconn.PgError{Code: "42P01", Message: `relation "x" does not exist`}
	err := fromPg(0, "SELECT 1", pe)
	var got *pgconn.PgError
	if !errors.As(err, &got) || !errors.Is(err, apply.ErrSchemaBehind) {
		t.Fatalf("fromPg lost the cause or the class: %v", err)
	}
}

func TestLiteralRefusesWhatIsNotSafeOnBothDialects(t *testing.T) {
	if got, err := Literal("it's"); err != nil || got != "'it''s'" {
		t.Fatalf("Literal(it's) = %s, %v", got, err)
	}
	for _, s := range []string{`a\`, "a\nb", "a\x00"} {
		if _, err := Literal(s); err == nil {
			t.Errorf("Literal(%q) accepted", s)
		}
	}
}
