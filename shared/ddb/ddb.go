// Package ddb holds the DynamoDB attribute-value helpers that the stores
// sharing the pipeline's state table (checkpoint/dynamo, load/loadstore)
// both need.
package ddb

import (
	"errors"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// S is a string attribute value.
func S(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// N is a number attribute value.
func N(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// StringOf returns v's string, or "" when v is missing or not a string.
func StringOf(v types.AttributeValue) string {
	if s, ok := v.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// NumberOf returns v's number as text, or "" when v is missing or not a
// number.
func NumberOf(v types.AttributeValue) string {
	if n, ok := v.(*types.AttributeValueMemberN); ok {
		return n.Value
	}
	return ""
}

// IsConditional reports whether err is a failed write condition.
func IsConditional(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
