package batch

// LoadMarks is the source table, in the pipeline's capture schema, whose
// inserted rows mark in the change stream the moment a table's initial-load
// copy for one target was complete. Capture delivers its inserts as
// ordinary row changes; appliers never write it as a table: a mark tells
// the applier that the table's copy is complete and every change the copy
// may have missed comes before the mark, so the held changes can be
// replayed and the table handed over to the stream (see pgapply).
//
// The schema name repeats config.CaptureSchema ("pgferry_" + pipeline),
// which this package cannot import.
func LoadMarks(pipeline string) Table {
	return Table{Schema: "pgferry_" + pipeline, Name: "load_marks"}
}

// Columns of LoadMarks that a mark is read by.
const (
	MarkTarget = "target"     // the target the load copied to
	MarkSchema = "tbl_schema" // the loaded table
	MarkTable  = "tbl_name"
	MarkLoadID = "load_id" // the load generation the mark closes
)
