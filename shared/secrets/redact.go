package secrets

import "strings"

// Redact returns err with every occurrence of password in its text
// replaced, keeping err in the chain (errors.Is and errors.As still see
// it). It guards against a driver error that echoes a connection's
// password. An empty password leaves err as it is.
func Redact(err error, password string) error {
	if err == nil || password == "" {
		return err
	}
	return redacted{err, password}
}

type redacted struct {
	err      error
	password string
}

func (r redacted) Error() string { return strings.ReplaceAll(r.err.Error(), r.password, "xxxxx") }
func (r redacted) Unwrap() error { return r.err }
