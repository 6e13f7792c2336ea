// Package dynamo stores checkpoints and leases in DynamoDB with conditional
// writes only. The lease and the checkpoint share one item per pipeline, so
// a checkpoint write can be conditioned on still holding the lease without
// TransactWriteItems.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/ddb"
)

// Store keeps one pipeline's drain item in a DynamoDB table whose
// partition key is the string attribute "id".
type Store struct {
	db    *dynamodb.Client
	table string
	id    string
	now   func() time.Time
}

// New returns a store for pipeline in table.
func New(db *dynamodb.Client, table, pipeline string) *Store {
	return &Store{db: db, table: table, id: "drain#" + pipeline, now: time.Now}
}

func (s *Store) key() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: s.id}}
}

// Acquire takes the lease for owner if it is free, expired, or already
// owner's. It returns checkpoint.ErrLeaseHeld otherwise.
func (s *Store) Acquire(ctx context.Context, owner string, ttl time.Duration) (checkpoint.Lease, error) {
	now := s.now()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &s.table,
		Key:                 s.key(),
		UpdateExpression:    aws.String("SET lease_owner = :o, lease_expires = :e, lease_gen = if_not_exists(lease_gen, :zero) + :one"),
		ConditionExpression: aws.String("attribute_not_exists(lease_owner) OR lease_expires < :now OR lease_owner = :o"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":o": ddb.S(owner), ":e": ddb.N(now.Add(ttl).UnixMilli()), ":now": ddb.N(now.UnixMilli()),
			":zero": ddb.N(0), ":one": ddb.N(1),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		if ddb.IsConditional(err) {
			return checkpoint.Lease{}, checkpoint.ErrLeaseHeld
		}
		return checkpoint.Lease{}, fmt.Errorf("checkpoint: acquire lease: %w", err)
	}
	gen, _ := strconv.ParseInt(ddb.NumberOf(out.Attributes["lease_gen"]), 10, 64)
	return checkpoint.Lease{Owner: owner, Gen: gen, Expires: now.Add(ttl)}, nil
}

// Renew extends a held lease; checkpoint.ErrLeaseLost if it was taken.
func (s *Store) Renew(ctx context.Context, l checkpoint.Lease, ttl time.Duration) (checkpoint.Lease, error) {
	exp := s.now().Add(ttl)
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       s.key(),
		UpdateExpression:          aws.String("SET lease_expires = :e"),
		ConditionExpression:       aws.String("lease_owner = :o AND lease_gen = :g"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":o": ddb.S(l.Owner), ":g": ddb.N(l.Gen), ":e": ddb.N(exp.UnixMilli())},
	})
	if err != nil {
		if ddb.IsConditional(err) {
			return l, checkpoint.ErrLeaseLost
		}
		return l, fmt.Errorf("checkpoint: renew lease: %w", err)
	}
	l.Expires = exp
	return l, nil
}

// Release gives the lease up so the next drain need not wait for expiry.
// Releasing a lease already lost is not an error.
func (s *Store) Release(ctx context.Context, l checkpoint.Lease) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       s.key(),
		UpdateExpression:          aws.String("SET lease_expires = :zero"),
		ConditionExpression:       aws.String("lease_owner = :o AND lease_gen = :g"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":o": ddb.S(l.Owner), ":g": ddb.N(l.Gen), ":zero": ddb.N(0)},
	})
	if err != nil && !ddb.IsConditional(err) {
		return fmt.Errorf("checkpoint: release lease: %w", err)
	}
	return nil
}

// Load returns the stored checkpoint, or the zero Checkpoint if none was
// ever saved. It reads consistently.
func (s *Store) Load(ctx context.Context) (checkpoint.Checkpoint, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: s.key(), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("checkpoint: load: %w", err)
	}
	it := out.Item
	if _, ok := it["pos"]; !ok {
		return checkpoint.Checkpoint{}, nil
	}
	var cp checkpoint.Checkpoint
	var err1, err2 error
	cp.Pos, err1 = parsePos(ddb.StringOf(it["pos"]))
	cp.LastSent, err2 = parsePos(ddb.StringOf(it["last_sent"]))
	if err := errors.Join(err1, err2); err != nil {
		return cp, fmt.Errorf("checkpoint: load: %w", err)
	}
	cp.Seq, _ = strconv.ParseUint(ddb.NumberOf(it["seq"]), 10, 64)
	cp.Prev, cp.Window, cp.Lineage = ddb.StringOf(it["prev"]), ddb.StringOf(it["window"]), ddb.StringOf(it["lineage"])
	cp.Schema, cp.Capture = ddb.StringOf(it["schema_fp"]), ddb.StringOf(it["capture"])
	cp.Rules = ddb.StringOf(it["rules_fp"])
	if cp.Resend, err = parseResend(ddb.StringOf(it["resend"])); err != nil {
		return cp, fmt.Errorf("checkpoint: load: %w", err)
	}
	if ms, err := strconv.ParseInt(ddb.NumberOf(it["updated_at"]), 10, 64); err == nil {
		cp.Saved = time.UnixMilli(ms)
	}
	return cp, nil
}

// Save stores cp if l still holds the lease and cp.Pos is strictly after
// the stored position. It returns checkpoint.ErrLeaseLost or
// checkpoint.ErrStale when the condition fails; when it returns nil the
// write is durable. cp.Capture is stored when set; an empty one leaves the
// stored mode as it is.
func (s *Store) Save(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) error {
	set := "SET pos = :p, last_sent = :ls, seq = :seq, prev = :prev, #w = :w, lineage = :lin, schema_fp = :fp, resend = :rs, updated_at = :now"
	vals := map[string]types.AttributeValue{
		":p": ddb.S(cp.Pos.String()), ":ls": ddb.S(cp.LastSent.String()), ":seq": ddb.N(int64(cp.Seq)), ":rs": ddb.S(formatResend(cp.Resend)),
		":prev": ddb.S(cp.Prev), ":w": ddb.S(cp.Window), ":lin": ddb.S(cp.Lineage), ":fp": ddb.S(cp.Schema), ":now": ddb.N(s.now().UnixMilli()),
		":o": ddb.S(l.Owner), ":g": ddb.N(l.Gen),
	}
	if cp.Capture != "" {
		set += ", capture = :cap"
		vals[":cap"] = ddb.S(cp.Capture)
	}
	if cp.Rules != "" {
		set += ", rules_fp = :rfp"
		vals[":rfp"] = ddb.S(cp.Rules)
	}
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       s.key(),
		UpdateExpression:          aws.String(set),
		ConditionExpression:       aws.String("lease_owner = :o AND lease_gen = :g AND (attribute_not_exists(pos) OR pos < :p)"),
		ExpressionAttributeNames:  map[string]string{"#w": "window"},
		ExpressionAttributeValues: vals,
	})
	if err == nil {
		return nil
	}
	if !ddb.IsConditional(err) {
		return fmt.Errorf("checkpoint: save %s: %w", cp.Pos, err)
	}
	return s.refused(ctx, l, fmt.Sprintf("save %s", cp.Pos))
}

// refused tells apart the two conditions a write under lease l can fail
// (what names the write): checkpoint.ErrLeaseLost when l no longer holds
// the lease, else checkpoint.ErrStale with the stored position.
func (s *Store) refused(ctx context.Context, l checkpoint.Lease, what string) error {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: s.key(), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", what, err)
	}
	if ddb.StringOf(out.Item["lease_owner"]) != l.Owner || ddb.NumberOf(out.Item["lease_gen"]) != strconv.FormatInt(l.Gen, 10) {
		return checkpoint.ErrLeaseLost
	}
	return fmt.Errorf("%w: %s, stored %s", checkpoint.ErrStale, what, ddb.StringOf(out.Item["pos"]))
}

// ClearResend removes the resend mark (checkpoint.Resend) of the stored
// checkpoint once its batch is known to be on the queue, if l still holds
// the lease and the checkpoint is still at pos. It returns
// checkpoint.ErrLeaseLost or checkpoint.ErrStale when not.
func (s *Store) ClearResend(ctx context.Context, l checkpoint.Lease, pos batch.Position) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &s.table,
		Key:                 s.key(),
		UpdateExpression:    aws.String("SET resend = :none, updated_at = :now"),
		ConditionExpression: aws.String("lease_owner = :o AND lease_gen = :g AND pos = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":none": ddb.S(""), ":now": ddb.N(s.now().UnixMilli()), ":p": ddb.S(pos.String()),
			":o": ddb.S(l.Owner), ":g": ddb.N(l.Gen),
		},
	})
	if err == nil {
		return nil
	}
	if !ddb.IsConditional(err) {
		return fmt.Errorf("checkpoint: clear the resend mark at %s: %w", pos, err)
	}
	return s.refused(ctx, l, fmt.Sprintf("clear the resend mark at %s", pos))
}

// formatResend stores a pending resend as its two positions ("" when none).
func formatResend(r checkpoint.Resend) string {
	if !r.Pending {
		return ""
	}
	return r.Read.String() + " " + r.From.String()
}

func parseResend(s string) (checkpoint.Resend, error) {
	if s == "" {
		return checkpoint.Resend{}, nil
	}
	read, from, ok := strings.Cut(s, " ")
	if !ok {
		return checkpoint.Resend{}, fmt.Errorf("bad resend %q", s)
	}
	r := checkpoint.Resend{Pending: true}
	var err1, err2 error
	r.Read, err1 = parsePos(read)
	r.From, err2 = parsePos(from)
	return r, errors.Join(err1, err2)
}

func parsePos(s string) (batch.Position, error) {
	if s == "" {
		return batch.Position{}, nil
	}
	var p batch.Position
	if _, err := fmt.Sscanf(s, "%d.%d", &p.Tick, &p.Tx); err != nil {
		return p, fmt.Errorf("bad position %q", s)
	}
	return p, nil
}

// Delete removes the pipeline's item: its checkpoint and lease. The next
// drain starts from the source's initial snapshot. Deleting a missing item
// is not an error.
func (s *Store) Delete(ctx context.Context) error {
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: s.key()}); err != nil {
		return fmt.Errorf("checkpoint: delete: %w", err)
	}
	return nil
}
