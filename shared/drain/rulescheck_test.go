package drain

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/checkpoint"
)

func TestCheckRulesRefusesAnUnacknowledgedChangeOnly(t *testing.T) {
	now := map[string]string{"a": "1111111111111111", "b": "2222222222222222"}
	cp := func(m map[string]string) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{Rules: checkpoint.EncodeRules(m)}
	}
	for name, c := range map[string]struct {
		cp       checkpoint.Checkpoint
		accepted map[string]string
		refused  []string
	}{
		"first run":             {checkpoint.Checkpoint{}, nil, nil},
		"unchanged":             {cp(now), nil, nil},
		"new target":            {cp(map[string]string{"a": now["a"]}), nil, nil},
		"b changed":             {cp(map[string]string{"a": now["a"], "b": "9999999999999999"}), nil, []string{"b"}},
		"both changed":          {cp(map[string]string{"a": "8888888888888888", "b": "9999999999999999"}), nil, []string{"a", "b"}},
		"b acknowledged":        {cp(map[string]string{"a": now["a"], "b": "9999999999999999"}), map[string]string{"b": now["b"]}, nil},
		"stale acknowledgement": {cp(map[string]string{"a": now["a"], "b": "9999999999999999"}), map[string]string{"b": "9999999999999999"}, []string{"b"}},
	} {
		err := CheckRules(c.cp, now, c.accepted)
		if len(c.refused) == 0 {
			if err != nil {
				t.Errorf("%s: %v, want no refusal", name, err)
			}
			continue
		}
		var re *RulesError
		if !errors.As(err, &re) || !errors.Is(err, ErrRulesChanged) || strings.Join(re.Changed, ",") != strings.Join(c.refused, ",") {
			t.Errorf("%s: err = %v, want a refusal of %v", name, err, c.refused)
			continue
		}
		for _, n := range c.refused {
			for _, want := range []string{"targets." + n + ".rules", "targets." + n + ".accept_rules_change: \"" + now[n] + "\"", "reload"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: refusal lacks %q: %v", name, want, err)
				}
			}
		}
	}
}
