package batch

import (
	"errors"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	b := Batch{Pipeline: "p", Target: "t", Seq: 7, From: Position{1, 5}, To: Position{2, 9},
		Epochs: []Epoch{{Truncate: []Table{{"s", "x"}}, Segments: []Segment{{
			Table: Table{"s", `we"ird`}, Columns: []string{"id", "v"}, Key: []string{"id"},
			Upserts: []Row{{v("1"), nil}}, Deletes: []Row{{v("2")}},
		}}}}}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != Version || got.Seq != 7 || got.To != (Position{2, 9}) || got.Rows() != 2 {
		t.Fatalf("round trip changed the batch: %+v", got)
	}
	if s := got.Epochs[0].Segments[0]; s.Table.Name != `we"ird` || s.Upserts[0][1] != nil || *s.Deletes[0][0] != "2" {
		t.Fatalf("round trip changed the segment: %+v", s)
	}
}

func TestDecodeRefusesOtherVersions(t *testing.T) {
	_, err := Decode([]byte(`{"v":3,"from":{"tick":1,"tx":0},"to":{"tick":1,"tx":5}}`))
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v, want ErrVersion", err)
	}
}

func TestDecodeRefusesRowsThatDoNotFitColumns(t *testing.T) {
	_, err := Decode([]byte(`{"v":1,"from":{"tick":1,"tx":0},"to":{"tick":1,"tx":5},"epochs":[{"seg":[{"t":{"s":"a","n":"b"},"c":["x","y"],"k":["x"],"u":[["1"]]}]}]}`))
	if err == nil || !strings.Contains(err.Error(), "1 values for 2 columns") {
		t.Fatalf("got %v, want a row/column mismatch error", err)
	}
}

func TestPositionOrderMatchesStringOrder(t *testing.T) {
	ps := []Position{{0, 0}, {0, 5}, {1, 0}, {1, 10}, {1, TxEnd}, {2, 1}, {10, 3}}
	for i := 0; i+1 < len(ps); i++ {
		if !ps[i].Less(ps[i+1]) || !(ps[i].String() < ps[i+1].String()) {
			t.Errorf("%v should sort before %v both as positions and as strings", ps[i], ps[i+1])
		}
	}
}

func TestSpilledBatchNeedsItsVersionAndNoEpochs(t *testing.T) {
	b := Batch{Pipeline: "p", Target: "t", Seq: 2, From: Position{1, 0}, To: Position{2, 0}, Parts: []string{"k0", "k1"}, NetRows: 9}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil || got.Version != VersionParts || len(got.Parts) != 2 || got.Rows() != 9 {
		t.Fatalf("round trip: %+v, err %v", got, err)
	}
	for _, bad := range []string{
		`{"v":1,"from":{"tick":1},"to":{"tick":2},"parts":["k"]}`,
		`{"v":4,"from":{"tick":1},"to":{"tick":2}}`,
		`{"v":4,"from":{"tick":1},"to":{"tick":2},"parts":["k"],"epochs":[{}]}`,
		`{"v":5,"from":{"tick":1},"to":{"tick":2}}`,
	} {
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrVersion) {
			t.Errorf("Decode(%s) = %v, want ErrVersion", bad, err)
		}
	}
	eps := []Epoch{{Segments: []Segment{{Table: Table{"s", "x"}, Columns: []string{"id"}, Key: []string{"id"}, Upserts: []Row{{v("1")}}}}}}
	part, err := EncodePart(eps)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodePart(part); err != nil || EpochRows(got) != 1 {
		t.Fatalf("part round trip: %+v, err %v", got, err)
	}
	if _, err := DecodePart([]byte(`{"epochs":[{"seg":[{"t":{"s":"a","n":"b"},"c":["x","y"],"u":[["1"]]}]}]}`)); err == nil {
		t.Error("DecodePart accepted a row that does not fit its columns")
	}
}
