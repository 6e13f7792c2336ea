package config

import (
	"strings"
	"testing"
)

func TestSlotCaptureIsAcceptedWithDerivedNames(t *testing.T) {
	doc := strings.Replace(valid, "capture: trigger", "capture: slot\n  replica_identity_full: true", 1)
	c, err := Parse([]byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Capture != CaptureSlot || !c.Source.ReplicaIdentityFull {
		t.Fatalf("source = %+v, want slot capture with replica_identity_full", c.Source)
	}
	if c.SlotName() != "pgferry_demo" || c.PublicationName() != "pgferry_demo" {
		t.Fatalf("slot %q, publication %q; want both pgferry_demo", c.SlotName(), c.PublicationName())
	}
	d, err := Parse([]byte(strings.Replace(valid, "capture: trigger", "capture: slot", 1)), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.Source.ReplicaIdentityFull {
		t.Fatal("source.replica_identity_full must default to false")
	}
}

func TestSlotKeysRefusedNamingTheKey(t *testing.T) {
	cases := []struct{ name, to, want string }{
		{"identity option in trigger mode", "capture: trigger\n  replica_identity_full: true", "source.replica_identity_full: only applies to capture: slot"},
		{"identity option not a boolean", "capture: slot\n  replica_identity_full: sometimes", "replica_identity_full"},
		{"misspelt slot key", "capture: slot\n  replica_identity: full", `unknown key "replica_identity" in source`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(valid, "capture: trigger", c.to, 1)), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}
