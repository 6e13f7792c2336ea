package verify

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Report compares every replicated table on every target
// (functions/local --verify) and writes one line per table and target to
// w: the source table (and the name it has on the target when
// apply_schema moves it), the target, both row counts and "match",
// "MISMATCH: …" or "ERROR: …". It returns nil only when every comparison
// matches; otherwise an error naming each table and target that differs.
// Source and targets are read at different moments, so it is meaningful
// only while the source is quiet (after --until-idle with no writes).
func Report(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, targets map[string]Target, w io.Writer) error {
	res, err := Compare(ctx, src, targets, cfg)
	if err != nil {
		return err
	}
	var bad []string
	fmt.Fprintf(w, "%-40s %-10s %12s %12s  %s\n", "table", "target", "source rows", "target rows", "checksum")
	for _, r := range res {
		status := "match"
		switch {
		case r.Err != nil:
			status = "ERROR: " + r.Err.Error()
		case r.SourceRows != r.TargetRows:
			status = "MISMATCH: row counts differ"
		case !r.OK():
			// The checksum, not the count, caught it: a changed value.
			status = fmt.Sprintf("MISMATCH: same row count, checksums differ (source %s, target %s)", r.SourceChecksum, r.TargetChecksum)
		}
		name := r.Table.String()
		if r.TargetTable != r.Table {
			name += " -> " + r.TargetTable.String()
		}
		if !r.OK() {
			bad = append(bad, fmt.Sprintf("%s on target %s", name, r.Target))
		}
		targetRows := fmt.Sprint(r.TargetRows)
		if r.Err != nil {
			targetRows = "-" // not counted: the error says why
		}
		fmt.Fprintf(w, "%-40s %-10s %12d %12s  %s\n", name, r.Target, r.SourceRows, targetRows, status)
	}
	if len(bad) > 0 {
		return fmt.Errorf("verify: %d of %d table comparisons differ: %s", len(bad), len(res), strings.Join(bad, ", "))
	}
	fmt.Fprintf(w, "verify: all %d table comparisons match\n", len(res))
	return nil
}

// ReportCounts writes a row-count comparison of tables between the
// source and every target of cfg (see Counts) to w, and returns an error
// naming how many differ.
func ReportCounts(ctx context.Context, src *pgxpool.Pool, targets map[string]Target, cfg *config.Config, tables []batch.Table, w io.Writer) error {
	bad := 0
	fmt.Fprintf(w, "%-40s %-10s %12s %12s  %s\n", "table", "target", "source rows", "target rows", "count")
	counts := Counts(ctx, src, targets, cfg, tables)
	for _, c := range counts {
		status := "match"
		switch {
		case c.Err != nil:
			status = "ERROR: " + c.Err.Error()
		case !c.OK():
			status = "DIFFERENT"
		case c.NotCounted != "":
			status = "not compared (" + c.NotCounted + "; --verify compares through the rules)"
		}
		if !c.OK() {
			bad++
		}
		fmt.Fprintf(w, "%-40s %-10s %12d %12d  %s\n", c.Table, c.Target, c.SourceRows, c.TargetRows, status)
	}
	if bad > 0 {
		return fmt.Errorf("load: %d of %d row counts differ", bad, len(counts))
	}
	fmt.Fprintf(w, "load: all %d row counts match\n", len(counts))
	return nil
}
