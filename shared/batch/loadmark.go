package batch

// LoadMarks is the source table, in the pipeline's capture schema, whose
// inserted rows mark in the change stream the moment a table's initial-load
// copy for one target was complete. Capture delivers its inserts as
// ordinary row changes; appliers never write it as a table: a mark tells
// the applier that the table's copy is complete and every change the copy
// may have missed comes before the mark, so the held changes can be
// replayed and the table handed over to the stream (see pgapply).
func LoadMarks(pipeline string) Table {
	return Table{Schema: CaptureSchema(pipeline), Name: "load_marks"}
}

// CaptureSchema is the source schema that holds a pipeline's capture
// objects, pgferry_<pipeline>. config.Config.CaptureSchema (and the slot,
// publication and trigger names derived from it) returns this; it is
// defined here because appliers, which hold only the pipeline's name,
// must find the load marks in it too.
func CaptureSchema(pipeline string) string { return "pgferry_" + pipeline }

// Columns of LoadMarks that a mark is read by.
const (
	MarkTarget = "target"     // the target the load copied to
	MarkSchema = "tbl_schema" // the loaded table
	MarkTable  = "tbl_name"
	MarkLoadID = "load_id" // the load generation the mark closes
)
