package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Keys of a kind: redshift target (DESIGN §6). They are refused on other
// kinds.

// RedshiftDataAPI says how the Redshift Data API reaches the database:
// a serverless workgroup, or a provisioned cluster; credentials from a
// Secrets Manager secret, a database user (GetClusterCredentials,
// clusters only) or, with neither, the caller's IAM identity.
type RedshiftDataAPI struct {
	Workgroup string `yaml:"workgroup"`
	Cluster   string `yaml:"cluster"`
	Database  string `yaml:"database"`
	SecretARN string `yaml:"secret_arn"`
	DBUser    string `yaml:"db_user"`
}

// Staging is where a Redshift target's COPY files are written.
type Staging struct {
	Bucket string `yaml:"bucket"` // the pipeline bucket (aws.bucket) when empty
	Prefix string `yaml:"prefix"` // key prefix, "" or ending in "/"
}

// Values of targets.<name>.json.
const (
	JSONSuper   = "super"
	JSONVarchar = "varchar"
)

// DefaultNumeric is the precision and scale a Redshift target gives a
// numeric without a typmod when targets.<name>.numeric is not set. At 19
// digits Redshift stores the unscaled value in 64 bits, so values beyond
// ±92233720368.54775807 saturate.
const DefaultNumeric = "19,8"

var (
	// Workgroup names: 3-64 lower-case letters, digits and "-"; an ARN is
	// accepted too. Cluster identifiers: 1-63 of the same.
	workgroupRE = regexp.MustCompile(`^(?:[a-z0-9-]{3,64}|arn:aws[a-z-]*:redshift-serverless:[a-z0-9-]+:[0-9]{12}:workgroup/[a-z0-9-]+)$`)
	clusterRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	dbNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,126}$`)
	roleARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	prefixRE    = regexp.MustCompile(`^(?:[A-Za-z0-9!_.*()=/-]+/)?$`)
	numericRE   = regexp.MustCompile(`^\s*([0-9]+)\s*,\s*([0-9]+)\s*$`)
)

// NumericDefault returns the precision and scale of targets.<name>.numeric
// (DefaultNumeric when unset). Valid after Parse.
func (t Target) NumericDefault() (precision, scale int) {
	p, s, _ := parseNumeric(t.Numeric)
	return p, s
}

// JSONAsSuper reports whether json and jsonb map to SUPER (the default)
// rather than VARCHAR on a Redshift target.
func (t Target) JSONAsSuper() bool { return t.JSON == "" || t.JSON == JSONSuper }

// StagingBucket is the bucket of a Redshift target's COPY files.
func (c *Config) StagingBucket(t Target) string {
	if t.Staging != nil && t.Staging.Bucket != "" {
		return t.Staging.Bucket
	}
	return c.PayloadBucketName()
}

// StagingPrefix is the key prefix of a Redshift target's COPY files:
// staging.prefix, default pgferry/<pipeline>/<target>/ under the bucket.
func (c *Config) StagingPrefix(target string) string {
	if t := c.Targets[target]; t.Staging != nil && t.Staging.Prefix != "" {
		return t.Staging.Prefix
	}
	return "pgferry/" + c.Name + "/" + target + "/"
}

func parseNumeric(v string) (int, int, error) {
	if v == "" {
		v = DefaultNumeric
	}
	m := numericRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not \"precision,scale\" such as \"19,8\"", v)
	}
	p, _ := strconv.Atoi(m[1])
	s, _ := strconv.Atoi(m[2])
	if p < 1 || p > 38 || s > p {
		return 0, 0, fmt.Errorf("%q: precision must be 1 to 38 (Redshift's limit) and scale 0 to the precision", v)
	}
	return p, s, nil
}

// validateRedshift checks a kind: redshift target's keys; key is
// targets.<name>.
func validateRedshift(key string, t Target) []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{k}, args...)...))
	}
	if d := t.DataAPI; d != nil {
		k := key + ".data_api"
		if t.DSN != "" || t.DSNSecret != "" {
			bad(k, "set either %s.data_api or a direct connection (%s.dsn / %s.dsn_secret on port 5439), not both", key, key, key)
		}
		switch {
		case d.Workgroup == "" && d.Cluster == "":
			bad(k+".workgroup", "required (a Redshift Serverless workgroup), or %s.cluster (a provisioned cluster)", k)
		case d.Workgroup != "" && d.Cluster != "":
			bad(k+".cluster", "set either %s.workgroup or %s.cluster, not both", k, k)
		case d.Workgroup != "" && !workgroupRE.MatchString(d.Workgroup):
			bad(k+".workgroup", "%q is not a workgroup name (3-64 of a-z, 0-9, -) or ARN", d.Workgroup)
		case d.Cluster != "" && !clusterRE.MatchString(d.Cluster):
			bad(k+".cluster", "%q is not a cluster identifier (a letter, then up to 62 of a-z, 0-9, -)", d.Cluster)
		}
		if d.Database == "" {
			bad(k+".database", "required: the database to apply into (for example dev)")
		} else if !dbNameRE.MatchString(d.Database) {
			bad(k+".database", "%q is not a database name", d.Database)
		}
		switch {
		case d.SecretARN != "" && d.DBUser != "":
			bad(k+".db_user", "set either %s.secret_arn or %s.db_user, not both", k, k)
		case d.DBUser != "" && d.Workgroup != "":
			bad(k+".db_user", "only for a cluster; a workgroup takes %s.secret_arn or the caller's IAM identity", k)
		case d.DBUser != "" && !dbNameRE.MatchString(d.DBUser):
			bad(k+".db_user", "%q is not a database user name", d.DBUser)
		case d.SecretARN != "" && !secretARNRE.MatchString(d.SecretARN) && !secretNameRE.MatchString(d.SecretARN):
			bad(k+".secret_arn", "%q is neither a Secrets Manager secret ARN nor a secret name", d.SecretARN)
		}
	} else if ep := checkEndpoint(key, t.DSN, t.DSNSecret); ep != nil {
		errs = append(errs, fmt.Errorf("config: %s.data_api: required for kind redshift (or %s.dsn / %s.dsn_secret for a direct connection on port 5439)", key, key, key))
	}
	if s := t.Staging; s != nil {
		if s.Bucket != "" && (!bucketRE.MatchString(s.Bucket) || strings.Contains(s.Bucket, "..")) {
			bad(key+".staging.bucket", "%q is not an S3 bucket name", s.Bucket)
		}
		if !prefixRE.MatchString(s.Prefix) || strings.HasPrefix(s.Prefix, "/") || strings.Contains(s.Prefix, "//") {
			bad(key+".staging.prefix", "%q must be empty or a key prefix ending in / (letters, digits and !_.*()=-/), not starting with /", s.Prefix)
		}
	}
	if t.CopyRoleARN == "" {
		bad(key+".copy_role_arn", "required for kind redshift: the IAM role Redshift assumes to read the staged COPY files")
	} else if !roleARNRE.MatchString(t.CopyRoleARN) {
		bad(key+".copy_role_arn", "%q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", t.CopyRoleARN)
	}
	if _, _, err := parseNumeric(t.Numeric); err != nil {
		bad(key+".numeric", "%v", err)
	}
	switch t.JSON {
	case "", JSONSuper, JSONVarchar:
	default:
		bad(key+".json", "%q is not one of super, varchar", t.JSON)
	}
	return errs
}

// refuseRedshiftKeys refuses the Redshift-only keys on another kind.
func refuseRedshiftKeys(key string, t Target) []error {
	var errs []error
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"data_api", t.DataAPI != nil}, {"staging", t.Staging != nil}, {"copy_role_arn", t.CopyRoleARN != ""},
		{"numeric", t.Numeric != ""}, {"json", t.JSON != ""},
	} {
		if k.set {
			errs = append(errs, fmt.Errorf("config: %s.%s: only for kind redshift (this target is kind %q)", key, k.name, t.Kind))
		}
	}
	return errs
}
