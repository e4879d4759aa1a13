package sqserr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// A deleted queue is recognised by the JSON protocol's error type and by
// the query protocol's error codes, also wrapped; other failures are not
// taken for it.
func TestQueueMissing(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&types.QueueDoesNotExist{}, true},
		{&types.QueueDoesNotExist{Message: aws.String("gone")}, true},
		{fmt.Errorf("operation error: %w", &types.QueueDoesNotExist{}), true},
		{&smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue"}, true},
		{&smithy.GenericAPIError{Code: "QueueDoesNotExist"}, true},
		{fmt.Errorf("receive: %w", &smithy.GenericAPIError{Code: "QueueDoesNotExist"}), true},
		{&smithy.GenericAPIError{Code: "InvalidClientTokenId"}, false},
		{&smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{&types.QueueDeletedRecently{}, false},
		{context.DeadlineExceeded, false},
		{errors.New("connection refused"), false},
		{errors.New("AWS.SimpleQueueService.NonExistentQueue"), false},
	} {
		if got := QueueMissing(tc.err); got != tc.want {
			t.Errorf("QueueMissing(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
