package main

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// copySpec is a Redshift COPY from S3, as far as the stand-in emulates it.
type copySpec struct {
	schema, table   string
	columns         []string
	from            string // s3://bucket/key-or-prefix
	manifest        bool
	gzip            bool
	delimiter       byte
	quote           byte
	nullAs          string
	emptyAsNull     bool
	blanksAsNull    bool
	truncate        bool // TRUNCATECOLUMNS
	acceptInv       bool // ACCEPTINVCHARS
	invReplacement  string
	ignoreHeader    int
	fillRecord      bool
	hasCredentials  bool
	formatSpecified bool
}

// copyScanner walks a COPY statement's tokens.
type copyScanner struct {
	toks []token
	i    int
}

func (s *copyScanner) peek() token {
	if s.i < len(s.toks) {
		return s.toks[s.i]
	}
	return token{}
}

func (s *copyScanner) next() token { t := s.peek(); s.i++; return t }

func (s *copyScanner) done() bool { return s.i >= len(s.toks) }

// optAs skips an optional AS.
func (s *copyScanner) optAs() {
	if s.peek().is("as") {
		s.i++
	}
}

func (s *copyScanner) str(opt string) (string, error) {
	s.optAs()
	t := s.next()
	if t.tok != pg.Token_SCONST {
		return "", &sqlError{msg: "syntax error at or near " + strconv.Quote(t.text) + ": " + opt + " takes a quoted string"}
	}
	return unquote(t.text), nil
}

// unquote turns a SQL string literal's text into its value.
func unquote(lit string) string {
	if strings.HasPrefix(lit, "'") && strings.HasSuffix(lit, "'") && len(lit) >= 2 {
		return strings.ReplaceAll(lit[1:len(lit)-1], "''", "'")
	}
	if (strings.HasPrefix(lit, "E'") || strings.HasPrefix(lit, "e'")) && len(lit) >= 3 {
		r := strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\r`, "\r", `\'`, "'", "''", "'")
		return r.Replace(lit[2 : len(lit)-1])
	}
	return lit
}

func unident(text string) string {
	if strings.HasPrefix(text, `"`) {
		return strings.ReplaceAll(text[1:len(text)-1], `""`, `"`)
	}
	return strings.ToLower(text)
}

// parseCopy parses COPY table [(cols)] FROM 's3://…' options…, refusing
// what Redshift refuses and what the stand-in does not emulate.
// csv reads the CSV format option: comma-delimited, with an optional
// QUOTE [AS] 'c'.
func (s *copyScanner) csv(spec *copySpec) error {
	spec.formatSpecified = true
	spec.delimiter = ','
	if !s.peek().is("quote") {
		return nil
	}
	s.i++
	q, err := s.str("QUOTE")
	if err != nil {
		return err
	}
	if len(q) != 1 {
		return &sqlError{msg: "QUOTE must be a single character"}
	}
	spec.quote = q[0]
	return nil
}

func parseCopy(toks []token) (*copySpec, error) {
	s := &copyScanner{toks: toks, i: 1}
	spec := &copySpec{delimiter: '|', quote: '"', nullAs: `\N`, invReplacement: "?"}
	if s.peek().tok == pg.Token_ASCII_40 {
		return nil, refuse("copy-to", "COPY (query) TO is not supported (use UNLOAD)")
	}
	spec.table = unident(s.next().text)
	if s.peek().tok == pg.Token_ASCII_46 {
		s.i++
		spec.schema = spec.table
		spec.table = unident(s.next().text)
	}
	if s.peek().tok == pg.Token_ASCII_40 {
		s.i++
		for !s.done() && s.peek().tok != pg.Token_ASCII_41 {
			t := s.next()
			if t.tok == pg.Token_ASCII_44 {
				continue
			}
			spec.columns = append(spec.columns, unident(t.text))
		}
		s.i++
	}
	switch t := s.next(); {
	case t.is("to"):
		return nil, refuse("copy-to", "COPY … TO is not supported (use UNLOAD)")
	case !t.is("from"):
		return nil, &sqlError{msg: "syntax error at or near " + strconv.Quote(t.text)}
	}
	src := s.next()
	switch {
	case src.is("stdin"):
		return nil, refuse("copy-from-stdin", "COPY FROM STDIN is not supported: Redshift loads from S3, EMR, DynamoDB or SSH")
	case src.tok != pg.Token_SCONST:
		return nil, &sqlError{msg: "syntax error at or near " + strconv.Quote(src.text)}
	}
	spec.from = unquote(src.text)
	switch {
	case strings.HasPrefix(spec.from, "s3://"):
	case strings.HasPrefix(spec.from, "emr://"), strings.HasPrefix(spec.from, "dynamodb://"):
		return nil, unsupported("copy-source", "COPY from %s", spec.from)
	default:
		return nil, refuse("copy-from-file", "COPY from a local file is not supported: Redshift loads from S3, EMR, DynamoDB or SSH")
	}
	for !s.done() {
		t := s.next()
		var err error
		switch {
		case t.tok == pg.Token_WITH, t.tok == pg.Token_ASCII_44:
		case t.is("iam_role"):
			if s.peek().is("default") {
				s.i++
			} else if _, err = s.str("IAM_ROLE"); err != nil {
				return nil, err
			}
			spec.hasCredentials = true
		case t.is("credentials"):
			_, err = s.str("CREDENTIALS")
			spec.hasCredentials = true
		case t.is("access_key_id", "secret_access_key", "session_token"):
			_, err = s.str(t.text)
			spec.hasCredentials = true
		case t.is("region"):
			_, err = s.str("REGION")
		case t.is("manifest"):
			spec.manifest = true
		case t.is("format"):
			s.optAs()
			f := s.next()
			if !f.is("csv") {
				return nil, unsupported("copy-format", "COPY FORMAT %s (only CSV is emulated)", f.text)
			}
			if err := s.csv(spec); err != nil {
				return nil, err
			}
		case t.is("csv"):
			if err := s.csv(spec); err != nil {
				return nil, err
			}
		case t.is("delimiter"):
			d, err := s.str("DELIMITER")
			if err != nil {
				return nil, err
			}
			if len(d) != 1 {
				return nil, &sqlError{msg: "DELIMITER must be a single character"}
			}
			spec.delimiter = d[0]
		case t.is("gzip"):
			spec.gzip = true
		case t.is("bzip2", "lzop", "zstd"):
			return nil, unsupported("copy-compression", "COPY %s (only GZIP is emulated)", strings.ToUpper(t.text))
		case t.tok == pg.Token_NULL_P:
			spec.nullAs, err = s.str("NULL AS")
		case t.is("emptyasnull"):
			spec.emptyAsNull = true
		case t.is("blanksasnull"):
			spec.blanksAsNull = true
		case t.is("truncatecolumns"):
			spec.truncate = true
		case t.is("acceptinvchars"):
			spec.acceptInv = true
			s.optAs()
			if s.peek().tok == pg.Token_SCONST {
				spec.invReplacement = unquote(s.next().text)
			}
		case t.is("ignoreheader"):
			s.optAs()
			n, convErr := strconv.Atoi(s.next().text)
			if convErr != nil {
				return nil, &sqlError{msg: "IGNOREHEADER takes a number"}
			}
			spec.ignoreHeader = n
		case t.is("fillrecord"):
			spec.fillRecord = true
		case t.is("compupdate", "statupdate"):
			if p := s.peek(); p.is("on", "off", "true", "false", "preset") {
				s.i++
			}
		case t.is("timeformat", "dateformat"):
			var f string
			if f, err = s.str(strings.ToUpper(t.text)); err == nil && !strings.EqualFold(f, "auto") {
				return nil, unsupported("copy-time-format", "COPY %s '%s' (only 'auto' is emulated)", strings.ToUpper(t.text), f)
			}
		case t.is("maxerror"):
			s.optAs()
			if n := s.next().text; n != "0" {
				return nil, unsupported("copy-maxerror", "COPY MAXERROR %s (a load either succeeds whole or fails)", n)
			}
		case t.is("encoding"):
			s.optAs()
			if e := s.next(); !e.is("utf8") {
				return nil, unsupported("copy-encoding", "COPY ENCODING %s", e.text)
			}
		case t.is("escape") && spec.formatSpecified:
			return nil, refuse("copy-options", "ESCAPE cannot be used with CSV")
		default:
			return nil, unsupported("copy-option", "COPY option %s", strings.ToUpper(t.text))
		}
		if err != nil {
			return nil, err
		}
	}
	if !spec.formatSpecified {
		return nil, unsupported("copy-format", "COPY without CSV (Redshift's default pipe-delimited text format is not emulated)")
	}
	if !spec.hasCredentials {
		return nil, refuse("copy-credentials", "COPY from S3 needs IAM_ROLE, CREDENTIALS or access keys")
	}
	return spec, nil
}
