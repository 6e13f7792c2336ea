// Package secrets turns an AWS Secrets Manager secret into a PostgreSQL
// connection string, so deployed functions never carry a DSN in an
// environment variable.
//
// A secret's string is either a DSN (URL or key=value form) or the JSON that
// RDS and Redshift store for generated credentials:
//
//	{"username":"…","password":"…","host":"…","port":5432,"dbname":"…"}
//
// Errors name the secret (its id is not sensitive) and the missing field, but
// never echo the secret's value.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// Client is the one Secrets Manager call used here; *secretsmanager.Client
// satisfies it.
type Client interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ Client = (*secretsmanager.Client)(nil)

// DSN fetches the current version (AWSCURRENT) of secret id, an ARN or a
// name, and returns the connection string it holds. It makes exactly one
// GetSecretValue call and caches nothing; callers resolve once at cold start.
func DSN(ctx context.Context, c Client, id string) (string, error) {
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", id, err)
	}
	if out.SecretString == nil {
		return "", fmt.Errorf("secret %s: has no SecretString (binary secrets are not supported)", id)
	}
	dsn, err := ParseDSN(*out.SecretString)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", id, err)
	}
	return dsn, nil
}

// rdsSecret is the JSON shape of RDS/Redshift generated credentials. Port is
// a number in RDS secrets and a string in some hand-made ones.
type rdsSecret struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Host     string          `json:"host"`
	Port     json.RawMessage `json:"port"`
	DBName   string          `json:"dbname"`
	// SSLMode is not part of the RDS shape; "require" when absent, since a
	// deployed pipeline talks to its databases over the network.
	SSLMode string `json:"sslmode"`
}

// ParseDSN returns the connection string held in a secret's value: the value
// itself when it is a DSN, or one built from RDS-style JSON. The result always
// parses with pgx.ParseConfig. Errors never contain the value.
func ParseDSN(value string) (string, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return "", errors.New("the secret value is empty")
	}
	if !strings.HasPrefix(v, "{") {
		if _, err := pgx.ParseConfig(v); err != nil {
			return "", errors.New("the secret value is neither JSON nor a valid PostgreSQL connection string")
		}
		return v, nil
	}
	var s rdsSecret
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return "", errors.New("the secret value is not valid JSON (want username, password, host, port, dbname)")
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"username", s.Username}, {"password", s.Password}, {"host", s.Host}, {"dbname", s.DBName}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("the secret JSON lacks %s (RDS-managed master secrets hold only username and password: add host, port and dbname, or store a DSN)", strings.Join(missing, ", "))
	}
	port, err := parsePort(s.Port)
	if err != nil {
		return "", err
	}
	sslmode := s.SSLMode
	if sslmode == "" {
		sslmode = "require"
	}
	// Built with net/url, which escapes every part, never by formatting
	// values into a string.
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.Username, s.Password),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(port)),
		Path:     "/" + s.DBName,
		RawQuery: url.Values{"sslmode": {sslmode}}.Encode(),
	}
	dsn := u.String()
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "", errors.New("the secret JSON does not make a valid PostgreSQL connection string (check host, port and sslmode)")
	}
	return dsn, nil
}

// parsePort accepts 5432, "5432" or an absent port (5432).
func parsePort(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 5432, nil
	}
	p, err := strconv.Atoi(strings.Trim(string(raw), `"`))
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("the secret JSON's port is not a number between 1 and 65535")
	}
	return p, nil
}
