package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// validateSlot checks the keys that only mean something in slot capture.
func (c *Config) validateSlot() []error {
	var errs []error
	if c.Source.Capture != CaptureSlot && c.Source.ReplicaIdentityFull {
		errs = append(errs, fmt.Errorf("config: source.replica_identity_full: only applies to capture: slot (capture is %q)", c.Source.Capture))
	}
	return errs
}

// IdentityFull is source.replica_identity_full. It has its own type so
// that a value that is not a boolean is refused naming the key.
type IdentityFull bool

// UnmarshalYAML accepts a YAML boolean.
func (b *IdentityFull) UnmarshalYAML(n *yaml.Node) error {
	var v bool
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("source.replica_identity_full: line %d: %q is not true or false", n.Line, n.Value)
	}
	*b = IdentityFull(v)
	return nil
}
