package broker

import (
	"context"
	"log/slog"
	"net/netip"
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

func newSQSClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       sqstest.Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
}

// receiveResponse waits for the broker's answer in the client's queue, as a
// client does (GetQueueUrl, then long-poll receives).
func receiveResponse(ctx context.Context, t *testing.T, c *sqs.Client, clientID string) string {
	t.Helper()
	var url *string
	for url == nil {
		out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(ClientQueuePrefix + clientID)})
		if err == nil {
			url = out.QueueUrl
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("client queue never appeared: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 1, WaitTimeSeconds: 2})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(out.Messages) == 1 {
			return aws.ToString(out.Messages[0].Body)
		}
	}
}

func sendPoll(ctx context.Context, t *testing.T, c *sqs.Client, queueURL, clientID, body string) {
	t.Helper()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)}
	if clientID != "" {
		in.MessageAttributes = map[string]types.MessageAttributeValue{
			"ClientID": {DataType: aws.String("String"), StringValue: aws.String(clientID)},
		}
	}
	if _, err := c.SendMessage(ctx, in); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// TestSQSRendezvous runs client polls through a real SQS-compatible server
// with the pinned aws-sdk-go-v2 client (JSON protocol): a full match, a
// malformed poll, a message without ClientID, and the stale-queue sweep.
func TestSQSRendezvous(t *testing.T) {
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokerClient := newSQSClient(endpoint)
	b, err := New(Config{
		Logger:              slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AllowedRelayPattern: "snowflake.torproject.net$",
		ProxyPollTimeout:    20 * time.Second,
		ClientTimeout:       5 * time.Second,
		SQS: &SQSConfig{
			QueueName: "snowflake-broker-test",
			Clients:   []SQSAPI{brokerClient},
			// A long cleanup interval: the sweep is driven by hand below.
			CleanupInterval: time.Hour,
			QueueMaxAge:     time.Hour,
			// local-aws-sqs answers a long poll only when it expires.
			ReceiveWait: time.Second,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	client := newSQSClient(endpoint)
	var queueURL string
	for queueURL == "" {
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("snowflake-broker-test")})
		if err == nil {
			queueURL = aws.ToString(out.QueueUrl)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A proxy waits; a client polls over SQS; the proxy answers.
	proxyRes := make(chan *messages.ProxyPollResponse, 1)
	go func() {
		proxyRes <- b.proxyPoll(ctx, &messages.ProxyPollRequest{Sid: "sqs-sid", Version: "1.3", Type: "standalone",
			NAT: nat.Unrestricted, AcceptedRelayPattern: "snowflake.torproject.net$"}, netip.Addr{})
	}()
	waitWaiting(t, b, 1)
	poll, _ := (&messages.ClientPollRequest{Offer: testOffer, NAT: nat.Unknown}).Encode()
	sendPoll(ctx, t, client, queueURL, "0123456789abcdef", string(poll))
	pr := <-proxyRes
	if pr.Status != messages.StatusClientMatch || pr.Offer != testOffer {
		t.Fatalf("proxy got %+v", pr)
	}
	if !b.answer("sqs-sid", testAnswer) {
		t.Fatal("answer found no client")
	}
	body := receiveResponse(ctx, t, client, "0123456789abcdef")
	resp, err := messages.DecodeClientPollResponse([]byte(body))
	if err != nil || resp.Answer != testAnswer {
		t.Fatalf("client got %s (%v)", body, err)
	}

	// A malformed poll gets the decoder's error; no proxy is waiting for a
	// good one.
	sendPoll(ctx, t, client, queueURL, "1111111111111111", "2.0\n{}")
	if body := receiveResponse(ctx, t, client, "1111111111111111"); body != `{"error":"unsupported message version"}` {
		t.Fatalf("malformed poll: %s", body)
	}
	sendPoll(ctx, t, client, queueURL, "2222222222222222", string(poll))
	if body := receiveResponse(ctx, t, client, "2222222222222222"); body != `{"error":"no snowflake proxies currently available"}` {
		t.Fatalf("no proxy: %s", body)
	}
	lastQueue := time.Now()

	// No ClientID attribute, or an unusable one: ignored, and removed from
	// the broker queue.
	sendPoll(ctx, t, client, queueURL, "", string(poll))
	sendPoll(ctx, t, client, queueURL, "bad id!", string(poll))
	deadline := time.Now().Add(10 * time.Second)
	for {
		attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
				types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		if attrs.Attributes["ApproximateNumberOfMessages"] == "0" && attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages not consumed: %v", attrs.Attributes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(ClientQueuePrefix)})
	if err != nil || len(list.QueueUrls) != 3 {
		t.Fatalf("client queues: %v %v", list.QueueUrls, err)
	}

	// The sweep deletes queues older than the maximum age, judged by the
	// server's LastModifiedTimestamp against the server's clock: none at
	// the hour of the broker's configuration, all of them once a second old
	// and past a shorter maximum age.
	l := &sqsListener{b: b, api: brokerClient, cfg: b.cfg.SQS, queueURL: queueURL}
	if n, err := l.cleanup(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("early cleanup deleted %d (%v)", n, err)
	}
	waitSQSSecond(lastQueue)
	shortAge := *b.cfg.SQS
	shortAge.QueueMaxAge = sqsTestOldAge
	l.cfg = &shortAge
	if n, err := l.cleanup(ctx, time.Now()); err != nil || n != 3 {
		t.Fatalf("cleanup deleted %d (%v)", n, err)
	}
	list, err = client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(ClientQueuePrefix)})
	if err != nil || len(list.QueueUrls) != 0 {
		t.Fatalf("after cleanup: %v %v", list.QueueUrls, err)
	}
	// The broker's own queue is not a client queue and survives.
	if _, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("snowflake-broker-test")}); err != nil {
		t.Fatalf("broker queue gone: %v", err)
	}
}

func TestValidClientID(t *testing.T) {
	for id, ok := range map[string]bool{"0123456789abcdef": true, "A-b_9": true, "": false, "a b": false,
		"a/b": false, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false} {
		if validClientID(id) != ok {
			t.Errorf("validClientID(%q) = %v", id, !ok)
		}
	}
}

// tlog sends log output to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Logf("%s %s", time.Now().Format("15:04:05.000"), p)
	return len(p), nil
}

// deleteOnlySQS answers DeleteMessage; any other call would panic on the
// nil interface, which is the point: an invalid poll must not reach them.
type deleteOnlySQS struct {
	SQSAPI
	deleted int
}

func (d *deleteOnlySQS) DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	d.deleted++
	return &sqs.DeleteMessageOutput{}, nil
}

// TestSQSInvalidClientIDQuotedShort: anyone holding the public client
// credentials can send a ClientID attribute of hundreds of kilobytes; the
// error that is logged for it quotes only its start.
func TestSQSInvalidClientIDQuotedShort(t *testing.T) {
	api := &deleteOnlySQS{}
	l := &sqsListener{api: api, queueURL: "http://sqs.invalid/q"}
	for _, id := range []string{"bad id", strings.Repeat("x/", 100_000)} {
		m := types.Message{ReceiptHandle: aws.String("r"), MessageAttributes: map[string]types.MessageAttributeValue{
			"ClientID": {DataType: aws.String("String"), StringValue: aws.String(id)},
		}}
		err := l.handle(context.Background(), m)
		if err == nil || !strings.Contains(err.Error(), "invalid ClientID") {
			t.Fatalf("handle(%d-byte ClientID) = %v, want an invalid ClientID error", len(id), err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("error for a %d-byte ClientID is %d bytes long", len(id), len(err.Error()))
		}
	}
	if api.deleted != 2 {
		t.Errorf("%d messages deleted, want 2", api.deleted)
	}
}

func TestSQSConfigValidate(t *testing.T) {
	base := SQSConfig{QueueName: "q", Clients: []SQSAPI{&deleteOnlySQS{}}}
	for _, tc := range []struct {
		name string
		edit func(*SQSConfig)
		ok   bool
	}{
		{"defaults", func(*SQSConfig) {}, true},
		{"wait 1s", func(c *SQSConfig) { c.ReceiveWait = time.Second }, true},
		{"wait 20s", func(c *SQSConfig) { c.ReceiveWait = 20 * time.Second }, true},
		// Would be WaitTimeSeconds=0: a short poll, spinning on an empty queue.
		{"wait 500ms", func(c *SQSConfig) { c.ReceiveWait = 500 * time.Millisecond }, false},
		{"wait 21s", func(c *SQSConfig) { c.ReceiveWait = 21 * time.Second }, false},
		{"negative wait", func(c *SQSConfig) { c.ReceiveWait = -time.Second }, false},
		{"negative cleanup", func(c *SQSConfig) { c.CleanupInterval = -time.Second }, false},
		{"no queue", func(c *SQSConfig) { c.QueueName = "" }, false},
	} {
		c := base
		tc.edit(&c)
		if err := c.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
