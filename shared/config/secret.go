package config

import (
	"fmt"
	"regexp"
)

// A Secrets Manager secret id: a full or partial ARN, or a name.
var (
	secretARNRE  = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$`)
	secretNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)
)

// checkEndpoint validates one database endpoint, key being "source" or
// "targets.<name>": exactly one of dsn and dsn_secret must be set. A
// dsn_secret is resolved later (runner.ResolveDSNs), so here only its
// form is checked.
func checkEndpoint(key, dsn, secret string) []error {
	bad := func(k, format string, args ...any) []error {
		return []error{fmt.Errorf("config: %s: "+format, append([]any{k}, args...)...)}
	}
	switch {
	case dsn == "" && secret == "":
		return bad(key+".dsn", "required (or %s.dsn_secret: a Secrets Manager secret holding the DSN)", key)
	case dsn != "" && secret != "":
		return bad(key+".dsn_secret", "set either %s.dsn or %s.dsn_secret, not both", key, key)
	case dsn != "":
		if err := checkDSN(dsn); err != nil {
			return bad(key+".dsn", "%v", err)
		}
	default:
		if !secretARNRE.MatchString(secret) && !secretNameRE.MatchString(secret) {
			return bad(key+".dsn_secret", "%q is neither a Secrets Manager secret ARN nor a secret name", secret)
		}
	}
	return nil
}
