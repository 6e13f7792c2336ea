package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// A password with every character that matters in a URL or key=value DSN.
const hostile = `p@ss:w/o?r#d% 'x"\`

func TestParseDSNBuildsConnectionStringFromRDSJSON(t *testing.T) {
	cases := []struct {
		name, value       string
		host, db, sslmode string
		port              uint16
	}{
		{"numeric port", `{"engine":"postgres","username":"rep","password":` + jsonString(hostile) + `,"host":"db.example.internal","port":6543,"dbname":"orders","dbInstanceIdentifier":"x"}`,
			"db.example.internal", "orders", "require", 6543},
		{"string port and sslmode", `{"username":"rep","password":` + jsonString(hostile) + `,"host":"db","port":"5433","dbname":"a b","sslmode":"verify-full"}`,
			"db", "a b", "verify-full", 5433},
		{"no port", `{"username":"rep","password":` + jsonString(hostile) + `,"host":"db","dbname":"d"}`,
			"db", "d", "require", 5432},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn, err := ParseDSN(c.value)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			if pc.User != "rep" || pc.Password != hostile || pc.Host != c.host || pc.Port != c.port || pc.Database != c.db {
				t.Fatalf("got user=%q host=%q port=%d db=%q (password equal: %v)", pc.User, pc.Host, pc.Port, pc.Database, pc.Password == hostile)
			}
			if !strings.Contains(dsn, "sslmode="+c.sslmode) {
				t.Fatalf("sslmode %s not in the DSN", c.sslmode)
			}
		})
	}
}

func TestParseDSNPassesPlainDSNThrough(t *testing.T) {
	for _, v := range []string{
		"postgres://rep:secret@db:5432/orders?sslmode=require",
		"host=db dbname=orders user=rep password='se cret'",
		"  postgres://rep:secret@db/orders\n",
	} {
		got, err := ParseDSN(v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got != strings.TrimSpace(v) {
			t.Fatalf("got %q, want %q", got, strings.TrimSpace(v))
		}
	}
}

func TestParseDSNRefusesBadValuesWithoutEchoingThem(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"empty", "  ", "empty"},
		{"broken json", `{"username":"rep","password":"` + hostile, "not valid JSON"},
		{"rds master secret", `{"username":"rep","password":"` + "s3cr3t-pw" + `"}`, "lacks host, dbname"},
		{"bad port", `{"username":"rep","password":"s3cr3t-pw","host":"h","dbname":"d","port":99999}`, "port"},
		{"not a dsn", "s3cr3t-pw is not a DSN", "neither JSON nor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseDSN(c.value)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			for _, leak := range []string{"s3cr3t-pw", hostile} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error echoes the secret: %v", err)
				}
			}
		})
	}
}

// fakeSecretsManager speaks the Secrets Manager JSON protocol for
// GetSecretValue, so the test drives the real SDK client end to end. No
// Secrets Manager emulator runs on these machines.
func fakeSecretsManager(t *testing.T, values map[string]string) *secretsmanager.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Amz-Target"); got != "secretsmanager.GetSecretValue" {
			http.Error(w, "unexpected operation "+got, http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var in struct{ SecretId string }
		_ = json.Unmarshal(body, &in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		v, ok := values[in.SecretId]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + in.SecretId + "-AbCdEf", "Name": in.SecretId, "SecretString": v})
	}))
	t.Cleanup(srv.Close)
	return secretsmanager.New(secretsmanager.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  aws.AnonymousCredentials{},
	})
}

func TestDSNFetchesSecretThroughSDK(t *testing.T) {
	c := fakeSecretsManager(t, map[string]string{
		"pgferry/source": `{"username":"rep","password":"s3cr3t-pw","host":"db","port":5432,"dbname":"orders"}`,
	})
	dsn, err := DSN(context.Background(), c, "pgferry/source")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.ParseConfig(dsn)
	if err != nil || pc.Password != "s3cr3t-pw" || pc.Database != "orders" {
		t.Fatalf("dsn parsed to %+v, %v", pc, err)
	}

	_, err = DSN(context.Background(), c, "pgferry/missing")
	if err == nil || !strings.Contains(err.Error(), "secret pgferry/missing") || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("missing secret: err = %v, want it to name the secret and the AWS error", err)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRedactHidesThePasswordAndKeepsTheError(t *testing.T) {
	cause := errors.New("auth failed for s3cret (twice: s3cret)")
	err := Redact(fmt.Errorf("connect: %w", cause), "s3cret")
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Redact left the password in %q", err)
	}
	if !errors.Is(err, cause) {
		t.Fatal("Redact dropped the cause from the error chain")
	}
	if Redact(cause, "") != cause || Redact(nil, "x") != nil {
		t.Fatal("Redact changed an error it had nothing to hide in")
	}
}
