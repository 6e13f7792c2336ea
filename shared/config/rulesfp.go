package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"
)

var rulesFPRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// RulesFingerprint identifies what a target receives: its tables, exclude,
// deletes and rules, as validated (deletes defaulted). Two configurations
// with the same fingerprint give the target the same rows and columns. The
// drain records each target's fingerprint in the checkpoint and refuses to
// ship under a different one unless targets.<name>.accept_rules_change
// names it (drain.CheckRules).
func (c *Config) RulesFingerprint(target string) string {
	t := c.Targets[target]
	doc, err := yaml.Marshal(struct {
		Tables  []string `yaml:"tables"`
		Exclude []string `yaml:"exclude"`
		Deletes string   `yaml:"deletes"`
		Rules   []Rule   `yaml:"rules"`
	}{t.Tables, t.Exclude, t.Deletes, t.Rules})
	if err != nil {
		// The rules were decoded from YAML; encoding them back cannot fail.
		panic(fmt.Sprintf("config: fingerprint of targets.%s rules: %v", target, err))
	}
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:8])
}

// RulesFingerprints returns RulesFingerprint of every target, by name.
func (c *Config) RulesFingerprints() map[string]string {
	out := make(map[string]string, len(c.Targets))
	for _, n := range c.TargetNames() {
		out[n] = c.RulesFingerprint(n)
	}
	return out
}

// RulesAccepted returns targets.<name>.accept_rules_change of the targets
// that set it.
func (c *Config) RulesAccepted() map[string]string {
	out := map[string]string{}
	for _, n := range c.TargetNames() {
		if a := c.Targets[n].AcceptRulesChange; a != "" {
			out[n] = a
		}
	}
	return out
}
