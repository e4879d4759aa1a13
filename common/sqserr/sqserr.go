// Package sqserr classifies the errors of Amazon SQS calls that both the
// broker and the client's SQS rendezvous act on.
package sqserr

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// QueueMissing reports whether err says that the queue does not exist. The
// SDK names the error by the response's type (the JSON protocol); an
// SQS-compatible service that answers in the older query protocol's terms
// is recognised by its error code.
func QueueMissing(err error) bool {
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return true
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue":
		return true
	}
	return false
}
