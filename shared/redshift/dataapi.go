package redshift

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata/types"
	"github.com/aws/smithy-go"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/config"
)

// DataMaxStatements is how many statements one BatchExecuteStatement
// takes (the API's documented maximum).
const DataMaxStatements = 40

// DataAPI runs SQL through the Redshift Data API. A Tx is one
// BatchExecuteStatement, which Redshift runs as one transaction; the call
// is asynchronous, so it polls DescribeStatement until the batch ends.
// Temporary tables live as long as the call's session, which ends with it.
// The endpoint comes from the SDK configuration (AWS_ENDPOINT_URL_REDSHIFT_DATA
// reaches a stand-in).
type DataAPI struct {
	client *redshiftdata.Client
	dest   config.RedshiftDataAPI
	// PollMin and PollMax bound the wait between DescribeStatement calls
	// (it doubles from PollMin).
	PollMin, PollMax time.Duration
	calls            atomic.Int64
}

var _ Exec = (*DataAPI)(nil)

// NewDataAPI returns an executor for the workgroup or cluster in dest
// (targets.<name>.data_api, validated by config).
func NewDataAPI(client *redshiftdata.Client, dest config.RedshiftDataAPI) *DataAPI {
	return &DataAPI{client: client, dest: dest, PollMin: 20 * time.Millisecond, PollMax: time.Second}
}

// Calls returns the number of Data API requests made so far (a cost
// driver: every request counts against the API's rate limits).
func (d *DataAPI) Calls() int64 { return d.calls.Load() }

// MaxStatements is the Data API's limit for one batch.
func (d *DataAPI) MaxStatements() int { return DataMaxStatements }

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Tx runs stmts as one BatchExecuteStatement.
func (d *DataAPI) Tx(ctx context.Context, stmts []string) error {
	if len(stmts) > DataMaxStatements {
		return fmt.Errorf("redshift: %d statements in one transaction, the Data API takes at most %d", len(stmts), DataMaxStatements)
	}
	_, err := d.batch(ctx, stmts, "", 0)
	return err
}

// SessionKeepAlive is how long a Data API session that Staged opens
// stays alive after its last call: long enough to bridge the calls of
// one batch, short enough not to hold a connection slot for long.
const SessionKeepAlive = 60

var _ Stager = (*DataAPI)(nil)

// Staged opens a Data API session (SessionKeepAliveSeconds) with the
// first staging call, runs staging in calls of at most 40 statements
// (each a transaction of its own; temporary tables stay for the
// session), then final as one BatchExecuteStatement in the same session.
// Only final is bound by the 40-statement limit. The temporary tables go
// with the session when it expires, or earlier if final drops them.
func (d *DataAPI) Staged(ctx context.Context, staging, final []string) error {
	if len(final) > DataMaxStatements {
		return fmt.Errorf("redshift: the final transaction needs %d statements, the Data API takes at most %d in one "+
			"BatchExecuteStatement (staging is split over calls, the transaction cannot be)", len(final), DataMaxStatements)
	}
	if len(staging) == 0 {
		return d.Tx(ctx, final)
	}
	session := ""
	for off := 0; off < len(staging); off += DataMaxStatements {
		part := staging[off:min(off+DataMaxStatements, len(staging))]
		keep := int32(0)
		if session == "" {
			keep = SessionKeepAlive
		}
		id, err := d.batch(ctx, part, session, keep)
		if err != nil {
			var rerr *Error
			if errors.As(err, &rerr) && rerr.Index >= 0 {
				rerr.Index = -2 - (off + rerr.Index)
			}
			return err
		}
		if session == "" {
			if id == "" {
				return errors.New("redshift: the Data API opened no session (no SessionId in the answer)")
			}
			session = id
		}
	}
	_, err := d.batch(ctx, final, session, 0)
	return err
}

// batch runs stmts as one BatchExecuteStatement: in session when set,
// opening a session kept alive for keep seconds when keep > 0. It
// returns the call's session id.
func (d *DataAPI) batch(ctx context.Context, stmts []string, session string, keep int32) (string, error) {
	if len(stmts) == 0 {
		return session, nil
	}
	in := &redshiftdata.BatchExecuteStatementInput{Sqls: stmts}
	if session != "" {
		// The session carries the database and the credentials.
		in.SessionId = &session
	} else {
		in.Database, in.WorkgroupName, in.ClusterIdentifier = str(d.dest.Database), str(d.dest.Workgroup), str(d.dest.Cluster)
		in.SecretArn, in.DbUser = str(d.dest.SecretARN), str(d.dest.DBUser)
	}
	if keep > 0 {
		in.SessionKeepAliveSeconds = &keep
	}
	d.calls.Add(1)
	out, err := d.client.BatchExecuteStatement(ctx, in)
	if err != nil {
		return "", apiError("batch execute statement", err)
	}
	desc, err := d.wait(ctx, aws.ToString(out.Id))
	if err != nil {
		return "", err
	}
	id := aws.ToString(out.SessionId)
	if desc.Status == types.StatusStringFinished {
		return id, nil
	}
	// Name the statement that failed; the others were rolled back with it.
	for i, s := range desc.SubStatements {
		if s.Status == types.StatementStatusStringFailed {
			return "", newError(i, stmtAt(stmts, i), "", aws.ToString(s.Error), nil)
		}
	}
	return "", newError(-1, "", "", fmt.Sprintf("batch %s: %s", desc.Status, aws.ToString(desc.Error)), nil)
}

func stmtAt(stmts []string, i int) string {
	if i < len(stmts) {
		return stmts[i]
	}
	return ""
}

// Query runs one ExecuteStatement and reads every page of its result.
func (d *DataAPI) Query(ctx context.Context, sql string) ([][]*string, error) {
	d.calls.Add(1)
	out, err := d.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{
		Sql: &sql, Database: str(d.dest.Database), WorkgroupName: str(d.dest.Workgroup),
		ClusterIdentifier: str(d.dest.Cluster), SecretArn: str(d.dest.SecretARN), DbUser: str(d.dest.DBUser),
	})
	if err != nil {
		return nil, apiError("execute statement", err)
	}
	desc, err := d.wait(ctx, aws.ToString(out.Id))
	if err != nil {
		return nil, err
	}
	if desc.Status != types.StatusStringFinished {
		return nil, newError(-1, sql, "", aws.ToString(desc.Error), nil)
	}
	if !aws.ToBool(desc.HasResultSet) {
		return nil, nil
	}
	var rows [][]*string
	var token *string
	for {
		d.calls.Add(1)
		res, err := d.client.GetStatementResult(ctx, &redshiftdata.GetStatementResultInput{Id: out.Id, NextToken: token})
		if err != nil {
			return nil, apiError("get statement result", err)
		}
		for _, rec := range res.Records {
			row := make([]*string, len(rec))
			for i, f := range rec {
				row[i] = fieldText(f)
			}
			rows = append(rows, row)
		}
		if token = res.NextToken; token == nil || *token == "" {
			return rows, nil
		}
	}
}

// fieldText renders a result field as PostgreSQL's text output would.
func fieldText(f types.Field) *string {
	var s string
	switch v := f.(type) {
	case *types.FieldMemberIsNull:
		return nil
	case *types.FieldMemberStringValue:
		s = v.Value
	case *types.FieldMemberLongValue:
		s = strconv.FormatInt(v.Value, 10)
	case *types.FieldMemberDoubleValue:
		s = strconv.FormatFloat(v.Value, 'g', -1, 64)
	case *types.FieldMemberBooleanValue:
		s = "f"
		if v.Value {
			s = "t"
		}
	case *types.FieldMemberBlobValue:
		s = fmt.Sprintf("\\x%x", v.Value)
	default:
		return nil
	}
	return &s
}

// wait polls DescribeStatement until the statement (or batch) ends. If
// ctx ends first it asks Redshift to cancel, so an abandoned transaction
// does not commit behind the caller's back… as far as cancelling can
// prevent that: a batch already committing still commits, which is why
// callers guard replays inside the transaction.
func (d *DataAPI) wait(ctx context.Context, id string) (*redshiftdata.DescribeStatementOutput, error) {
	delay := d.PollMin
	for {
		d.calls.Add(1)
		desc, err := d.client.DescribeStatement(ctx, &redshiftdata.DescribeStatementInput{Id: &id})
		if err != nil {
			if ctx.Err() != nil {
				d.cancel(id)
			}
			return nil, apiError("describe statement", err)
		}
		switch desc.Status {
		case types.StatusStringFinished, types.StatusStringFailed, types.StatusStringAborted:
			return desc, nil
		}
		select {
		case <-ctx.Done():
			d.cancel(id)
			return nil, fmt.Errorf("redshift: waiting for statement %s: %w", id, ctx.Err())
		case <-time.After(delay):
		}
		if delay *= 2; delay > d.PollMax {
			delay = d.PollMax
		}
	}
}

func (d *DataAPI) cancel(id string) {
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	d.calls.Add(1)
	_, _ = d.client.CancelStatement(ctx, &redshiftdata.CancelStatementInput{Id: &id})
}

// apiError wraps a failed Data API request. Throttling and server faults
// are left to apply.Classify (smithy errors); the Data API's own "too
// busy" client faults are transient too.
func apiError(op string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ActiveStatementsExceededException", "ActiveSessionsExceededException", "ActiveWaitingRequestsExceededException":
			return fmt.Errorf("redshift: %s: %w: %w", op, apply.ErrTransient, err)
		}
	}
	return fmt.Errorf("redshift: %s: %w", op, err)
}
