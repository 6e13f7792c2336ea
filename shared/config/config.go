// Package config loads and validates a pipeline's YAML configuration.
// Everything is checked once, at start; every error names the offending key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is one pipeline: a source, its targets, and tuning knobs.
type Config struct {
	Name    string            `yaml:"name"`
	Source  Source            `yaml:"source"`
	Targets map[string]Target `yaml:"targets"`
	Batch   Batch             `yaml:"batch"`
	Drain   Drain             `yaml:"drain"`
	Apply   Apply             `yaml:"apply"`
	AWS     AWS               `yaml:"aws"`
	Load    InitialLoad       `yaml:"load"`
	Deploy  Deploy            `yaml:"deploy"`
	// HashSalt salts every hash rule of the pipeline (see rules.go);
	// required when a rule hashes. Give it as "${PGFERRY_HASH_SALT}".
	HashSalt string `yaml:"hash_salt"`
	// HashSaltSecret, instead of HashSalt, names a Secrets Manager secret
	// (ARN or name) whose value is the salt; runner.Start resolves it once
	// into HashSalt. A deployed pipeline uses it (DESIGN §6).
	HashSaltSecret string `yaml:"hash_salt_secret"`

	// Parsed forms of Source.Tables and Source.Exclude.
	Include []Pattern `yaml:"-"`
	Exclude []Pattern `yaml:"-"`
}

// Source is the database changes are captured from.
type Source struct {
	DSN     string   `yaml:"dsn"`
	Capture string   `yaml:"capture"`
	Tables  []string `yaml:"tables"`
	Exclude []string `yaml:"exclude"`
	// CopyExisting (default true) copies the rows a table already holds
	// into the change stream when capture is first installed on it;
	// "keyless" copies only tables without a primary key, leaving the
	// keyed ones to the initial load (see CopyMode).
	CopyExistingRows *CopyMode `yaml:"copy_existing"`
	// ReplicaIdentityFull (slot capture only, default false) lets set-up
	// give REPLICA IDENTITY FULL to replicated tables that have no usable
	// replica identity; without it such tables are refused. See slot.go.
	ReplicaIdentityFull IdentityFull `yaml:"replica_identity_full"`
	// DSNSecret names a Secrets Manager secret (ARN or name) holding the
	// DSN, instead of DSN; runner.ResolveDSNs resolves it at start, into a
	// value kept apart from the configuration (DSN stays empty).
	DSNSecret string `yaml:"dsn_secret"`
}

// CopyExisting reports whether existing rows are copied at trigger install.
func (s Source) CopyExisting() bool {
	return s.CopyExistingRows == nil || *s.CopyExistingRows != CopyNone
}

// CopyKeyed reports whether the copy at install includes tables with a
// primary key (copy_existing: true, the default).
func (s Source) CopyKeyed() bool { return s.CopyExistingRows == nil || *s.CopyExistingRows == CopyAll }

// Target is a database the changes are applied to.
type Target struct {
	Kind      string `yaml:"kind"`
	DSN       string `yaml:"dsn"`
	DSNSecret string `yaml:"dsn_secret"` // like Source.DSNSecret
	// ApplySchema, when set, puts every replicated table, and the types,
	// functions and sequences it brings along, into this one schema on
	// the target (see shared/schema.Mapper).
	ApplySchema string `yaml:"apply_schema"`
	// SchemaSync (default true) makes the target follow the source's
	// schema: schema jobs and retry-after-DDL create and alter its tables
	// (see shared/schema/pgsync). false leaves the target's schema to the
	// operator; batches still fail loudly when it is behind.
	SchemaSync *bool `yaml:"schema_sync"`

	// Kind redshift only (see redshift.go). DataAPI, when set, replaces
	// DSN/DSNSecret (a direct connection on port 5439).
	DataAPI     *RedshiftDataAPI `yaml:"data_api"`
	Staging     *Staging         `yaml:"staging"`
	CopyRoleARN string           `yaml:"copy_role_arn"`
	Numeric     string           `yaml:"numeric"`
	JSON        string           `yaml:"json"`
	// Tables and Exclude choose the replicated tables this target gets
	// (all when Tables is empty); Deletes is hard or soft; Rules shape
	// rows per table. See rules.go.
	Tables  []string `yaml:"tables"`
	Exclude []string `yaml:"exclude"`
	Deletes string   `yaml:"deletes"`
	Rules   []Rule   `yaml:"rules"`
	// AcceptRulesChange acknowledges a change of Tables, Exclude, Deletes
	// or Rules on a running pipeline: the new RulesFingerprint, which the
	// drain's refusal prints (see rulesfp.go).
	AcceptRulesChange string `yaml:"accept_rules_change"`
	// Parsed forms of Tables and Exclude.
	TablePatterns   []Pattern `yaml:"-"`
	ExcludePatterns []Pattern `yaml:"-"`
}

// SyncsSchema reports whether schema sync manages this target's schema.
func (t Target) SyncsSchema() bool { return t.SchemaSync == nil || *t.SchemaSync }

// SyncsSchema reports whether any target follows the source's schema
// (then the drain puts schema jobs in the stream).
func (c *Config) SyncsSchema() bool {
	for _, t := range c.Targets {
		if t.SyncsSchema() {
			return true
		}
	}
	return false
}

// Batch bounds the size of one batch. A single source transaction larger
// than the bounds still travels as one batch, so it is applied atomically.
type Batch struct {
	MaxRows  int `yaml:"max_rows"`
	MaxBytes int `yaml:"max_bytes"`
	// InlineLimit is the largest message body sent inline on SQS; larger
	// batches go to S3 and the message carries a pointer (claim check).
	InlineLimit int `yaml:"inline_limit"`
}

// Drain tunes the capture loop.
type Drain struct {
	// Interval is the local runner's tick (EventBridge's rate in AWS).
	Interval Duration `yaml:"interval"`
	// Lease is how long a drain's lease lasts without renewal.
	Lease Duration `yaml:"lease"`
	// MinWindow is the shortest span of one snapshot window under load:
	// longer windows make fewer, larger batches.
	MinWindow Duration `yaml:"min_window"`
}

// Apply tunes the applier.
type Apply struct {
	// MaxAttempts bounds deliveries of a failing message before it is
	// dead-lettered (SQS maxReceiveCount).
	MaxAttempts int `yaml:"max_attempts"`
	// Visibility is how long a received batch stays hidden from other
	// consumers; a long apply extends it. After a crash the batch
	// reappears once it lapses.
	Visibility Duration `yaml:"visibility"`
}

// AWS names the resources; empty names are derived from the pipeline name.
type AWS struct {
	Queue  string `yaml:"queue"`
	Table  string `yaml:"table"`
	Bucket string `yaml:"bucket"`
}

// Duration is a time.Duration written as "500ms", "2s", "1m".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 500ms or 2s", n.Line, n.Value) // the line becomes the key: see nameKeys
	}
	d.Duration = v
	return nil
}

const (
	CaptureTrigger = "trigger"
	CaptureSlot    = "slot"
	KindPostgres   = "postgres"
	KindRedshift   = "redshift"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// Load reads, expands and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, os.LookupEnv)
}

// Parse expands ${VAR} references in scalar values using lookup, decodes
// with unknown keys refused, applies defaults and validates.
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("config: the file is empty")
	}
	if err := expand(&root, "", lookup); err != nil {
		return nil, err
	}
	expanded, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %s", nameKeys(friendlyYAMLError(err), expanded))
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand substitutes ${VAR} in scalar values in place. Expanding values,
// not raw text, means a password holding "#" or ": " cannot change the
// document's structure.
func expand(n *yaml.Node, path string, lookup func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			if err := expand(c, p, lookup); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if err := expand(n.Content[i+1], p, lookup); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if !varRE.MatchString(n.Value) {
			break
		}
		var missing []string
		n.Value = varRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := lookup(name)
			if !ok {
				missing = append(missing, name)
			}
			return v
		})
		if len(missing) > 0 {
			return fmt.Errorf("config: %s: environment variable %s is not set", path, strings.Join(missing, ", "))
		}
		// An expanded value stays a string (a password of "123" or "true"
		// must not change type), except for the numeric keys.
		n.Tag, n.Style = "", yaml.DoubleQuotedStyle
		if isNonString(path) {
			n.Style = 0
		}
	}
	return nil
}

// isNonString reports keys whose values are numbers, so re-quoting after
// expansion must not turn them into strings.
func isNonString(path string) bool {
	for _, k := range []string{"batch.max_rows", "batch.max_bytes", "batch.inline_limit", "apply.max_attempts",
		"load.parallelism", "load.chunk_rows", "load.drop_indexes", "source.copy_existing"} {
		if path == k {
			return true
		}
	}
	return isDeployNumber(path)
}

var fieldRE = regexp.MustCompile(`field (\S+) not found in type config\.(\w+)`)

func friendlyYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n  ")
	return fieldRE.ReplaceAllStringFunc(s, func(m string) string {
		p := fieldRE.FindStringSubmatch(m)
		return fmt.Sprintf("unknown key %q in %s", p[1], sectionOf(p[2]))
	})
}

func sectionOf(typ string) string {
	switch typ {
	case "Config":
		return "the top level"
	case "Source":
		return "source"
	case "Target":
		return "targets.<name>"
	case "RedshiftDataAPI":
		return "targets.<name>.data_api"
	case "Staging":
		return "targets.<name>.staging"
	case "Deploy", "VPC", "Alarms", "Functions":
		return deploySection(typ)
	case "Function":
		return "deploy.functions.<name>"
	default:
		return strings.ToLower(typ)
	}
}

func (c *Config) defaults() {
	if c.Source.Capture == "" {
		c.Source.Capture = CaptureTrigger
	}
	if c.Batch.MaxRows == 0 {
		c.Batch.MaxRows = 5000
	}
	if c.Batch.MaxBytes == 0 {
		c.Batch.MaxBytes = 8 << 20
	}
	if c.Batch.InlineLimit == 0 {
		c.Batch.InlineLimit = 240 << 10 // under SQS's 256 KiB with room for attributes
	}
	c.Load.defaults()
	if c.Drain.Interval.Duration == 0 {
		c.Drain.Interval.Duration = time.Second
	}
	if c.Drain.MinWindow.Duration == 0 {
		c.Drain.MinWindow.Duration = 250 * time.Millisecond
	}
	if c.Drain.Lease.Duration == 0 {
		c.Drain.Lease.Duration = 15 * time.Second
	}
	if c.Apply.Visibility.Duration == 0 {
		c.Apply.Visibility.Duration = 30 * time.Second
	}
	if c.Apply.MaxAttempts == 0 {
		c.Apply.MaxAttempts = 5
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
	}
	if c.Name == "" {
		bad("name", "required (it namespaces queues, tables and the capture schema)")
	} else if !nameRE.MatchString(c.Name) {
		bad("name", "%q must be lower-case letters, digits and _, starting with a letter, at most 40 characters", c.Name)
	}
	errs = append(errs, checkEndpoint("source", c.Source.DSN, c.Source.DSNSecret)...)
	switch c.Source.Capture {
	case CaptureTrigger:
	case CaptureSlot:
	default:
		bad("source.capture", "%q is not one of trigger, slot", c.Source.Capture)
	}
	if len(c.Source.Tables) == 0 {
		bad("source.tables", "required: at least one schema-qualified pattern such as public.*")
	}
	for i, p := range c.Source.Tables {
		pat, err := ParsePattern(p)
		if err != nil {
			bad(fmt.Sprintf("source.tables[%d]", i), "%v", err)
			continue
		}
		c.Include = append(c.Include, pat)
	}
	for i, p := range c.Source.Exclude {
		pat, err := ParsePattern(p)
		if err != nil {
			bad(fmt.Sprintf("source.exclude[%d]", i), "%v", err)
			continue
		}
		c.Exclude = append(c.Exclude, pat)
	}
	if len(c.Targets) == 0 {
		bad("targets", "required: at least one target")
	}
	for _, name := range c.TargetNames() {
		t := c.Targets[name]
		key := "targets." + name
		if !nameRE.MatchString(name) {
			bad(key, "target name %q must be lower-case letters, digits and _, starting with a letter", name)
		}
		switch t.Kind {
		case KindPostgres:
			errs = append(errs, refuseRedshiftKeys(key, t)...)
		case KindRedshift:
			errs = append(errs, validateRedshift(key, t)...)
		case "":
			bad(key+".kind", "required: postgres or redshift")
		default:
			bad(key+".kind", "%q is not one of postgres, redshift", t.Kind)
		}
		if t.Kind == KindRedshift && (t.DataAPI != nil || t.DSN == "" && t.DSNSecret == "") {
			// validateRedshift checked the endpoint.
		} else if ep := checkEndpoint(key, t.DSN, t.DSNSecret); ep != nil {
			errs = append(errs, ep...)
		} else if t.DSN != "" && t.DSN == c.Source.DSN {
			bad(key+".dsn", "is the same as source.dsn; a target must be a different database")
		} else if t.DSNSecret != "" && t.DSNSecret == c.Source.DSNSecret {
			bad(key+".dsn_secret", "is the same as source.dsn_secret; a target must be a different database")
		}
		if as := t.ApplySchema; as != "" && (as == TargetSchema || strings.HasPrefix(as, "pg_") || as == "information_schema" || len(as) > 63) {
			bad(key+".apply_schema", "%q is reserved or too long (pgferry, pg_*, information_schema; at most 63 bytes)", as)
		} else if as != "" && !t.SyncsSchema() {
			// Only schema sync maps source tables into apply_schema; without
			// it rows would silently land in the source's schema names.
			bad(key+".apply_schema", "needs schema sync: remove %s.schema_sync: false, or apply_schema", key)
		}
	}
	if c.Batch.MaxRows < 1 {
		bad("batch.max_rows", "must be at least 1, got %d", c.Batch.MaxRows)
	}
	if c.Batch.MaxBytes < 1024 {
		bad("batch.max_bytes", "must be at least 1024, got %d", c.Batch.MaxBytes)
	}
	if c.Batch.InlineLimit < 1024 || c.Batch.InlineLimit > 1<<20 {
		bad("batch.inline_limit", "must be between 1024 and 1048576 (the SQS maximum), got %d", c.Batch.InlineLimit)
	}
	if c.Drain.Interval.Duration < 10*time.Millisecond {
		bad("drain.interval", "must be at least 10ms, got %s", c.Drain.Interval.Duration)
	}
	if v := c.Drain.MinWindow.Duration; v < 0 || v > time.Minute {
		bad("drain.min_window", "must be between 0s and 1m, got %s", v)
	}
	if c.Drain.Lease.Duration < 5*time.Second {
		bad("drain.lease", "must be at least 5s, got %s", c.Drain.Lease.Duration)
	}
	if c.Apply.MaxAttempts < 1 || c.Apply.MaxAttempts > 1000 {
		bad("apply.max_attempts", "must be between 1 and 1000, got %d", c.Apply.MaxAttempts)
	}
	if v := c.Apply.Visibility.Duration; v < 2*time.Second || v > 12*time.Hour || v%time.Second != 0 {
		bad("apply.visibility", "must be whole seconds between 2s and 12h (the SQS limits), got %s", v)
	}
	if !strings.HasSuffix(c.QueueName(), ".fifo") {
		bad("aws.queue", "%q must end in .fifo (batches need a FIFO queue)", c.QueueName())
	}
	errs = append(errs, c.Deploy.validate()...)
	errs = append(errs, c.Load.validate()...)
	errs = append(errs, c.validateSlot()...)
	errs = append(errs, c.validateRules()...)
	return errors.Join(errs...)
}

// TargetNames returns the target names in a stable order.
func (c *Config) TargetNames() []string {
	names := make([]string, 0, len(c.Targets))
	for n := range c.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Replicated reports whether a table matches the include patterns and none
// of the exclude patterns.
func (c *Config) Replicated(schema, table string) bool {
	if schema == c.CaptureSchema() {
		return false
	}
	in := false
	for _, p := range c.Include {
		if p.Match(schema, table) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range c.Exclude {
		if p.Match(schema, table) {
			return false
		}
	}
	return true
}

// FromEnv loads the configuration of a deployed function: the YAML text in
// PGFERRY_CONFIG, or a file named by PGFERRY_CONFIG_FILE.
func FromEnv() (*Config, error) {
	if text, ok := os.LookupEnv(EnvConfig); ok {
		return Parse([]byte(text), os.LookupEnv)
	}
	if path := os.Getenv(EnvConfigFile); path != "" {
		return Load(path)
	}
	return nil, errors.New("config: set PGFERRY_CONFIG (YAML text) or PGFERRY_CONFIG_FILE")
}
