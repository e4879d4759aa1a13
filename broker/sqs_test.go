package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/sqstest"
)

// TestBinarySQS runs the binary with -broker-sqs-name/-broker-sqs-region
// against a local SQS-compatible server (endpoint and credentials through
// the AWS SDK's standard environment variables) and has a client poll go
// through SQS to a proxy polling over HTTP.
func TestBinarySQS(t *testing.T) {
	endpoint := sqstest.Start(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	base, _ := startBroker(t, "ws://127.0.0.1:9/", "-broker-sqs-name", "snowflake-broker", "-broker-sqs-region", sqstest.Region)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := sqs.New(sqs.Options{
		Region:       sqstest.Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	queueURL := waitQueueURL(ctx, t, client, "snowflake-broker")

	// The proxy keeps polling (the emulator may deliver the client's poll
	// only when the broker's 15 s receive ends) and answers its match.
	matched := make(chan struct{})
	go func() {
		for ctx.Err() == nil {
			body, _ := (&messages.ProxyPollRequest{Sid: "sqs-bin", Type: "standalone", NAT: nat.Unrestricted, AcceptedRelayPattern: "127.0.0.1$"}).Encode()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"proxy", strings.NewReader(string(body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r, err := messages.DecodeProxyPollResponse(b)
			if err != nil || r.Status != messages.StatusClientMatch {
				continue
			}
			ans, _ := (&messages.AnswerRequest{Sid: "sqs-bin", Answer: testSQSAnswer}).Encode()
			if resp, err := http.Post(base+"answer", "", strings.NewReader(string(ans))); err == nil {
				resp.Body.Close()
			}
			close(matched)
			return
		}
	}()
	waitDebug(t, base, "current snowflakes available: 1\n")

	poll, _ := (&messages.ClientPollRequest{Offer: `{"type":"offer","sdp":"v=0\r\n"}`, NAT: nat.Unknown}).Encode()
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    queueURL,
		MessageBody: aws.String(string(poll)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"ClientID": {DataType: aws.String("String"), StringValue: aws.String("fedcba9876543210")},
		},
	}); err != nil {
		t.Fatal(err)
	}
	respQueue := waitQueueURL(ctx, t, client, "snowflake-client-fedcba9876543210")
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: respQueue, MaxNumberOfMessages: 1, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			continue
		}
		r, err := messages.DecodeClientPollResponse([]byte(aws.ToString(out.Messages[0].Body)))
		if err != nil || r.Answer != testSQSAnswer {
			t.Fatalf("client got %s (%v)", aws.ToString(out.Messages[0].Body), err)
		}
		break
	}
	<-matched
}

// waitQueueURL asks for the URL of the named queue until it exists (the
// broker creates its own queue, and a client's when it answers).
func waitQueueURL(ctx context.Context, t *testing.T, client *sqs.Client, name string) *string {
	t.Helper()
	for {
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err == nil {
			return out.QueueUrl
		}
		if ctx.Err() != nil {
			t.Fatalf("queue %s never appeared", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const testSQSAnswer = `{"type":"answer","sdp":"v=0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"}`
