package apply

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassifyUsesIdentityAndSQLSTATE(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("pgapply: batch 3: %w", &pgconn.PgError{Code: code, Message: "x"})
	}
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"gap waits for the missing batch", fmt.Errorf("x: %w", ErrGap), Blocked},
		{"lineage waits for an operator", fmt.Errorf("x: %w", ErrLineage), Blocked},
		{"an adapter's transient verdict", fmt.Errorf("rsapply: %w: 1023", ErrTransient), Transient},
		{"check violation only the target has", pg("23514"), Failed},
		{"unique violation", pg("23505"), Failed},
		{"value out of range", pg("22003"), Failed},
		{"string too long for the target column", pg("22001"), Failed},
		{"undefined column", pg("42703"), Failed},
		{"permission denied", pg("42501"), Failed},
		{"statement timeout is the batch's doing", pg("57014"), Failed},
		{"deadlock", pg("40P01"), Transient},
		{"serialization failure", pg("40001"), Transient},
		{"lock timeout", pg("55P03"), Transient},
		{"server shutting down", pg("57P01"), Transient},
		{"server starting up", pg("57P03"), Transient},
		{"too many connections", pg("53300"), Transient},
		{"connection failure", pg("08006"), Transient},
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, Transient},
		{"bare ECONNRESET", fmt.Errorf("read: %w", syscall.ECONNRESET), Transient},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), Transient},
		{"S3 throttled", &smithy.GenericAPIError{Code: "SlowDown", Fault: smithy.FaultClient}, Transient},
		{"S3 server fault", &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}, Transient},
		{"claim-check payload missing", &smithy.GenericAPIError{Code: "NoSuchKey", Fault: smithy.FaultClient}, Failed},
		{"unknown error parks after bounded retries", errors.New("something odd"), Failed},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
