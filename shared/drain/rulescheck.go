package drain

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pgferry/pgferry/shared/checkpoint"
)

// ErrRulesChanged means a target's tables, exclude, deletes or rules differ
// from those its shipped batches were cut under, and the change was not
// acknowledged. Nothing was sent.
var ErrRulesChanged = errors.New("targets.<name>.rules: changed on a running pipeline")

// RulesError is ErrRulesChanged with the targets concerned.
type RulesError struct {
	// Changed are the targets whose fingerprint differs, sorted; Was and
	// Now their recorded and configured fingerprints.
	Changed  []string
	Was, Now map[string]string
}

func (e *RulesError) Error() string {
	var b strings.Builder
	for i, n := range e.Changed {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "targets.%s.rules (or its tables, exclude or deletes) changed on a running pipeline: batches were cut under rules fingerprint %s, the config now gives %s",
			n, e.Was[n], e.Now[n])
	}
	b.WriteString(". Rows already on the target keep the old shape and rows the old rules left out are missing; nothing was shipped. " +
		"To apply the new rules from the next batch: stop the pipeline, let schema sync bring the target's tables to the new shape, " +
		"reload the affected tables (README, \"Changing a target's rules on a running pipeline\": --initial-load --reload --load-tables …), " +
		"and acknowledge the change by setting ")
	for i, n := range e.Changed {
		if i > 0 {
			b.WriteString(" and ")
		}
		fmt.Fprintf(&b, "targets.%s.accept_rules_change: %q", n, e.Now[n])
	}
	b.WriteString("; or restore the previous rules")
	return b.String()
}

func (e *RulesError) Unwrap() error { return ErrRulesChanged }

// CheckRules compares the rules fingerprint each target's batches were cut
// under (cp.Rules) with the configured ones (now, from
// config.RulesFingerprints). A target whose fingerprint differs is
// refused, unless accepted (config.RulesAccepted) names its new
// fingerprint. A target the checkpoint has no fingerprint for (a new
// target, a first run, a checkpoint saved before fingerprints were
// recorded) is accepted as it is. The caller records now in every later
// save. Like CheckCapture it runs before anything is installed or sent.
func CheckRules(cp checkpoint.Checkpoint, now, accepted map[string]string) error {
	var changed []string
	recorded := checkpoint.DecodeRules(cp.Rules)
	for n, fp := range now {
		was, ok := recorded[n]
		if ok && was != fp && accepted[n] != fp {
			changed = append(changed, n)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	sort.Strings(changed)
	return &RulesError{Changed: changed, Was: recorded, Now: now}
}
