package pgsync

import "github.com/pgferry/pgferry/shared/config"

// coveredSchema reports whether a pattern names schema s as a whole
// ("s.*", "*.*"), and no exclude pattern takes it out as a whole: its
// functions, views and types are synced even while it holds no table.
// A schema that holds a replicated table is covered anyway (see
// schema.Selection.Schema); pgferry's capture schema never is.
func coveredSchema(cfg *config.Config) func(string) bool {
	return func(s string) bool {
		if s == cfg.CaptureSchema() {
			return false
		}
		in := false
		for _, p := range cfg.Include {
			in = in || wholeSchema(p, s)
		}
		for _, p := range cfg.Exclude {
			if wholeSchema(p, s) {
				return false
			}
		}
		return in
	}
}

// wholeSchema reports whether p matches every table of schema s: its
// table part is the glob "*" (a quoted "*" names one table).
func wholeSchema(p config.Pattern, s string) bool { return p.Table == "*" && p.Match(s, "") }
