package batch

import (
	"errors"
	"testing"
)

func TestSchemaJobEnvelopeIsItsOwnVersion(t *testing.T) {
	job := Batch{Pipeline: "p", Target: "t", Seq: 3, From: Position{Tick: 2}, To: Position{Tick: 3}, Schema: &SchemaJob{Reason: "x"}}
	body, err := job.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != VersionSchema || got.Schema == nil || got.Schema.Reason != "x" {
		t.Fatalf("decoded %+v, want a version %d schema job", got, VersionSchema)
	}
	for name, body := range map[string]string{
		"job claiming version 1":  `{"v":1,"from":{"tick":1,"tx":0},"to":{"tick":2,"tx":0},"schema":{}}`,
		"version 3 without a job": `{"v":3,"from":{"tick":1,"tx":0},"to":{"tick":2,"tx":0}}`,
		"job with rows":           `{"v":3,"from":{"tick":1,"tx":0},"to":{"tick":2,"tx":0},"schema":{},"epochs":[{"tr":[{"s":"a","n":"b"}]}]}`,
	} {
		if _, err := Decode([]byte(body)); !errors.Is(err, ErrVersion) {
			t.Errorf("%s: err = %v, want ErrVersion", name, err)
		}
	}
}
