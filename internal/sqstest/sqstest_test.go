package sqstest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestServer checks the properties of the server that the SQS rendezvous
// relies on, with the SDK version this module pins: queue creation with
// attributes, message attributes, long-poll receive, deletion, listing by
// prefix, and a real LastModifiedTimestamp.
func TestServer(t *testing.T) {
	endpoint := Start(t)
	client := sqs.New(sqs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := time.Now().Add(-2 * time.Second)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String("snowflake-client-0123456789abcdef"),
		Attributes: map[string]string{string(types.QueueAttributeNameMessageRetentionPeriod): "300"},
	})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    q.QueueUrl,
		MessageBody: aws.String("1.0\n{\"offer\":\"x\"}"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"ClientID": {DataType: aws.String("String"), StringValue: aws.String("0123456789abcdef")},
		},
	}); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:              q.QueueUrl,
		MaxNumberOfMessages:   10,
		WaitTimeSeconds:       1,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	m := out.Messages[0]
	if aws.ToString(m.Body) != "1.0\n{\"offer\":\"x\"}" {
		t.Fatalf("body %q", aws.ToString(m.Body))
	}
	if v := m.MessageAttributes["ClientID"]; aws.ToString(v.StringValue) != "0123456789abcdef" {
		t.Fatalf("ClientID attribute %+v", v)
	}
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}

	list, err := client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("snowflake-client-")})
	if err != nil || len(list.QueueUrls) != 1 {
		t.Fatalf("ListQueues = %v, %v", list, err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       q.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameLastModifiedTimestamp},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	secs, err := strconv.ParseInt(attrs.Attributes[string(types.QueueAttributeNameLastModifiedTimestamp)], 10, 64)
	if err != nil {
		t.Fatalf("LastModifiedTimestamp %q: %v", attrs.Attributes[string(types.QueueAttributeNameLastModifiedTimestamp)], err)
	}
	if ts := time.Unix(secs, 0); ts.Before(before) || ts.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("LastModifiedTimestamp %v is not the creation time", ts)
	}
	if _, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	if _, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("snowflake-client-0123456789abcdef")}); err == nil {
		t.Fatal("deleted queue still found")
	}
}
