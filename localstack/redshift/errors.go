package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// refusal is SQL the stand-in will not run. Redshift refuses it too when
// redshift is true; otherwise it is something the stand-in does not
// emulate (Redshift may accept it).
type refusal struct {
	rule     string
	msg      string
	redshift bool
}

func refuse(rule, format string, args ...any) *refusal {
	return &refusal{rule: rule, msg: fmt.Sprintf(format, args...), redshift: true}
}

func unsupported(rule, format string, args ...any) *refusal {
	return &refusal{rule: rule, msg: fmt.Sprintf(format, args...)}
}

// Error is the text DescribeStatement reports: Redshift's "ERROR: …"
// form, with the stand-in's rule name so a test can tell refusals apart.
func (r *refusal) Error() string {
	if r.redshift {
		return fmt.Sprintf("ERROR: %s [redshift stand-in refused: %s]", r.msg, r.rule)
	}
	return fmt.Sprintf("ERROR: redshift stand-in does not emulate this: %s [redshift stand-in unsupported: %s]", r.msg, r.rule)
}

// sqlError is an error Redshift would report in its own words.
type sqlError struct{ msg string }

func (e *sqlError) Error() string { return "ERROR: " + e.msg }

// validationError is answered synchronously as a ValidationException.
type validationError struct{ msg string }

func (e *validationError) Error() string { return e.msg }

var bytesCheck = regexp.MustCompile(`^rs(bytes|varbyte)_(\d+)_`)

// errorText renders an error the way DescribeStatement.Error shows it.
// Backend errors are mapped onto Redshift's wording where the stand-in
// emulates a Redshift rule with a PostgreSQL mechanism.
func errorText(err error) string {
	var r *refusal
	var s *sqlError
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &r):
		return r.Error()
	case errors.As(err, &s):
		return s.Error()
	case errors.As(err, &pe):
		return pgErrorText(pe)
	}
	return "ERROR: " + err.Error()
}

func pgErrorText(pe *pgconn.PgError) string {
	switch pe.Code {
	case "23514": // check_violation: the stand-in's byte-length checks
		if m := bytesCheck.FindStringSubmatch(pe.ConstraintName); m != nil {
			n, _ := strconv.Atoi(m[2])
			if m[1] == "bytes" {
				return fmt.Sprintf("ERROR: value too long for type character varying(%d)", n)
			}
			return fmt.Sprintf("ERROR: value too long for type binary varying(%d)", n)
		}
		if strings.HasPrefix(pe.ConstraintName, "rsnum64_") {
			return "ERROR: Numeric data overflow (result precision)"
		}
		if strings.HasPrefix(pe.ConstraintName, "rschar1b_") {
			return "ERROR: Multibyte character not supported for CHAR (Hint: try using VARCHAR)"
		}
	case "40001", "40P01":
		// Redshift reports its serializable isolation violations as 1023.
		return fmt.Sprintf("ERROR: 1023 DETAIL: Serializable isolation violation on table %s (stand-in backend: %s)", pe.TableName, pe.Message)
	}
	if pe.Severity == "FATAL" {
		return "FATAL: " + pe.Message
	}
	return "ERROR: " + pe.Message
}
