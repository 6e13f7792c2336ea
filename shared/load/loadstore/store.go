// Package loadstore keeps initial-load plans and per-chunk progress in the
// pipeline's DynamoDB state table (partition key "id"), with conditional
// writes only: one item per table plan and one per copied chunk.
//
// The target's own record of copied chunks, written in the chunk's COPY
// transaction, is what makes a chunk copy happen at most once; these items
// are the plan the workers share, the resume point, and the progress the
// alarms and the progress bar read. A worker that dies between its commit
// on the target and its write here leaves the chunk unrecorded; the
// chunk's next delivery finds it copied on the target and records it.
package loadstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/ddb"
	"github.com/pgferry/pgferry/shared/load"
)

// Store is the DynamoDB load store of one state table.
type Store struct {
	db    *dynamodb.Client
	table string
	now   func() time.Time
}

var _ load.Store = (*Store)(nil)

// New returns the store in table.
func New(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table, now: time.Now}
}

// planID names a plan item. Schema and table names are quoted, so names
// holding '#' or '.' cannot collide.
func planID(pipeline, target string, t batch.Table) string {
	return "load#" + pipeline + "#" + target + "#" + strconv.Quote(t.Schema) + "." + strconv.Quote(t.Name)
}

func chunkID(loadID string, n int) string { return "loadchunk#" + loadID + "#" + strconv.Itoa(n) }

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}
}

// maxPlanBytes keeps a plan item under DynamoDB's 400 KB item limit.
const maxPlanBytes = 350 << 10

// SavePlan implements load.Store.
func (s *Store) SavePlan(ctx context.Context, p *load.Plan, replace bool) (*load.Plan, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(data) > maxPlanBytes {
		return nil, fmt.Errorf("loadstore: the plan of %s has %d chunks and does not fit one DynamoDB item; raise load.chunk_rows", p.Table.Table, len(p.Chunks))
	}
	now := s.now().UnixMilli()
	in := &dynamodb.PutItemInput{
		TableName: &s.table,
		Item: map[string]types.AttributeValue{
			"id":       ddb.S(planID(p.Pipeline, p.Target, p.Table.Table)),
			"load_id":  ddb.S(p.LoadID),
			"plan":     ddb.S(string(data)),
			"chunks":   ddb.N(int64(len(p.Chunks))),
			"est_rows": ddb.N(p.Table.EstRows),
			"finished": &types.AttributeValueMemberBOOL{Value: false},
			// Progress counters; updated_at is the last progress, for the
			// stall alarm.
			"chunks_done": ddb.N(0), "rows_copied": ddb.N(0), "bytes_copied": ddb.N(0),
			"started_at": ddb.N(now), "updated_at": ddb.N(now),
		},
	}
	if !replace {
		in.ConditionExpression = aws.String("attribute_not_exists(id) OR finished = :t")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":t": &types.AttributeValueMemberBOOL{Value: true}}
	}
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if !ddb.IsConditional(err) {
			return nil, fmt.Errorf("loadstore: save plan of %s: %w", p.Table.Table, err)
		}
		got, err := s.Plan(ctx, p.Pipeline, p.Target, p.Table.Table)
		if err != nil {
			return nil, err
		}
		if got == nil {
			return nil, fmt.Errorf("loadstore: plan of %s vanished while saving", p.Table.Table)
		}
		return got, nil
	}
	return p, nil
}

// Plan implements load.Store.
func (s *Store) Plan(ctx context.Context, pipeline, target string, t batch.Table) (*load.Plan, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(planID(pipeline, target, t)), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("loadstore: read plan of %s: %w", t, err)
	}
	if out.Item == nil {
		return nil, nil
	}
	var p load.Plan
	if err := json.Unmarshal([]byte(ddb.StringOf(out.Item["plan"])), &p); err != nil {
		return nil, fmt.Errorf("loadstore: plan of %s: %w", t, err)
	}
	if b, ok := out.Item["finished"].(*types.AttributeValueMemberBOOL); ok {
		p.Finished = b.Value
	}
	return &p, nil
}

// ChunkDone implements load.Store. The chunk item's "copies" counts the
// workers that copied the chunk (it stays at most 1); the plan's counters
// move only the first time a chunk is recorded.
func (s *Store) ChunkDone(ctx context.Context, j load.Job, rows, bytes int64, copied bool) error {
	now := s.now().UnixMilli()
	c := int64(0)
	if copied {
		c = 1
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.table,
		Key:                      key(chunkID(j.LoadID, j.Chunk.N)),
		UpdateExpression:         aws.String("SET done_at = if_not_exists(done_at, :now), #r = if_not_exists(#r, :rows), tbl = :tbl ADD copies :c"),
		ExpressionAttributeNames: map[string]string{"#r": "rows"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": ddb.N(now), ":rows": ddb.N(rows), ":c": ddb.N(c), ":tbl": ddb.S(j.Table.Table.String()),
		},
		ReturnValues: types.ReturnValueUpdatedOld,
	})
	if err != nil {
		return fmt.Errorf("loadstore: record chunk %d of %s: %w", j.Chunk.N, j.Table.Table, err)
	}
	if _, seen := out.Attributes["done_at"]; seen {
		return nil
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &s.table,
		Key:                 key(planID(j.Pipeline, j.Target, j.Table.Table)),
		UpdateExpression:    aws.String("SET updated_at = :now ADD chunks_done :one, rows_copied :rows, bytes_copied :bytes"),
		ConditionExpression: aws.String("load_id = :id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": ddb.N(now), ":one": ddb.N(1), ":rows": ddb.N(rows), ":bytes": ddb.N(bytes), ":id": ddb.S(j.LoadID),
		},
	})
	if err != nil && !ddb.IsConditional(err) { // a plan replaced by a reload keeps its own counters
		return fmt.Errorf("loadstore: count chunk %d of %s: %w", j.Chunk.N, j.Table.Table, err)
	}
	return nil
}

// Done implements load.Store.
func (s *Store) Done(ctx context.Context, p *load.Plan) (map[int]bool, error) {
	done := map[int]bool{}
	for start := 0; start < len(p.Chunks); start += 100 {
		var keys []map[string]types.AttributeValue
		for _, c := range p.Chunks[start:min(start+100, len(p.Chunks))] {
			keys = append(keys, key(chunkID(p.LoadID, c.N)))
		}
		req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for len(req) > 0 {
			out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("loadstore: read chunk progress of %s: %w", p.Table.Table, err)
			}
			for _, it := range out.Responses[s.table] {
				if _, ok := it["done_at"]; !ok {
					continue
				}
				id := ddb.StringOf(it["id"])
				n, err := strconv.Atoi(id[len(chunkID(p.LoadID, 0))-1:])
				if err == nil {
					done[n] = true
				}
			}
			req = out.UnprocessedKeys
		}
	}
	return done, nil
}

// Copies returns how many workers copied each recorded chunk of p.
func (s *Store) Copies(ctx context.Context, p *load.Plan) (map[int]int, error) {
	out := map[int]int{}
	for _, c := range p.Chunks {
		got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(chunkID(p.LoadID, c.N)), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("loadstore: read chunk %d of %s: %w", c.N, p.Table.Table, err)
		}
		if got.Item != nil {
			n, _ := strconv.Atoi(ddb.NumberOf(got.Item["copies"]))
			out[c.N] = n
		}
	}
	return out, nil
}

// Finish implements load.Store.
func (s *Store) Finish(ctx context.Context, p *load.Plan) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &s.table,
		Key:                 key(planID(p.Pipeline, p.Target, p.Table.Table)),
		UpdateExpression:    aws.String("SET finished = :t, finished_at = :now"),
		ConditionExpression: aws.String("load_id = :id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberBOOL{Value: true}, ":now": ddb.N(s.now().UnixMilli()), ":id": ddb.S(p.LoadID),
		},
	})
	if err != nil && !ddb.IsConditional(err) {
		return fmt.Errorf("loadstore: finish load of %s: %w", p.Table.Table, err)
	}
	return nil
}

// Progress is a plan's counters.
type Progress struct {
	Finished                  bool
	Chunks, ChunksDone        int64
	EstRows, Rows, Bytes      int64
	StartedAt, LastProgressAt time.Time
}

// Progress returns the counters of t's plan for target (ok false if none).
func (s *Store) Progress(ctx context.Context, pipeline, target string, t batch.Table) (Progress, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(planID(pipeline, target, t)), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Progress{}, false, fmt.Errorf("loadstore: read progress of %s: %w", t, err)
	}
	if out.Item == nil {
		return Progress{}, false, nil
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(ddb.NumberOf(out.Item[k]), 10, 64); return v }
	p := Progress{Chunks: n("chunks"), ChunksDone: n("chunks_done"), EstRows: n("est_rows"), Rows: n("rows_copied"), Bytes: n("bytes_copied"),
		StartedAt: time.UnixMilli(n("started_at")), LastProgressAt: time.UnixMilli(n("updated_at"))}
	if b, ok := out.Item["finished"].(*types.AttributeValueMemberBOOL); ok {
		p.Finished = b.Value
	}
	return p, true, nil
}

// Delete removes t's plan for target and its chunk records. Deleting what
// does not exist is not an error.
func (s *Store) Delete(ctx context.Context, pipeline, target string, t batch.Table) error {
	p, err := s.Plan(ctx, pipeline, target, t)
	if err != nil || p == nil {
		return err
	}
	for _, c := range p.Chunks {
		if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(chunkID(p.LoadID, c.N))}); err != nil {
			return fmt.Errorf("loadstore: delete chunk %d of %s: %w", c.N, t, err)
		}
	}
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(planID(pipeline, target, t))}); err != nil {
		return fmt.Errorf("loadstore: delete plan of %s: %w", t, err)
	}
	return nil
}
