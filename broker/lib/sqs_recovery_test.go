package broker

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/sqstest"
)

// logRecorder keeps every log line for the test to search, and copies it
// to the test log.
type logRecorder struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.lines = append(r.lines, string(p))
	r.mu.Unlock()
	return tlog{r.t}.Write(p)
}

// waitLine waits up to 10 s for a log line containing every one of parts.
func (r *logRecorder) waitLine(parts ...string) (string, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		for _, l := range r.lines {
			found := true
			for _, p := range parts {
				found = found && strings.Contains(l, p)
			}
			if found {
				r.mu.Unlock()
				return l, true
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sqsFixture is a broker serving the SQS rendezvous of a local
// SQS-compatible server, and a client of that server.
type sqsFixture struct {
	b        *Broker
	client   *sqs.Client
	logs     *logRecorder
	queueURL string
}

// createBrokerQueue creates the broker's request queue as a broker run
// before this one would have, and returns its URL.
func createBrokerQueue(ctx context.Context, t *testing.T, c *sqs.Client, name string) string {
	t.Helper()
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{string(types.QueueAttributeNameMessageRetentionPeriod): sqsRetention}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

// startSQSBroker starts a broker listening on queue name at endpoint; it
// stops at test cleanup. before runs after the broker is made and before
// it starts to receive.
func startSQSBroker(ctx context.Context, t *testing.T, endpoint, name string, before func(*Broker)) *sqsFixture {
	t.Helper()
	f := &sqsFixture{client: newSQSClient(endpoint), logs: &logRecorder{t: t}}
	b, err := New(Config{
		Logger:              slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AllowedRelayPattern: "snowflake.torproject.net$",
		ProxyPollTimeout:    20 * time.Second,
		ClientTimeout:       5 * time.Second,
		SQS: &SQSConfig{QueueName: name, Clients: []SQSAPI{newSQSClient(endpoint)},
			CleanupInterval: time.Hour, QueueMaxAge: time.Hour, ReceiveWait: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	if before != nil {
		before(b)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for f.queueURL == "" {
		out, err := f.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err == nil {
			f.queueURL = aws.ToString(out.QueueUrl)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("broker queue never appeared: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

// waitQueueEmpty waits until the queue at url holds no message, visible or
// in flight.
func waitQueueEmpty(ctx context.Context, t *testing.T, c *sqs.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
				types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		if attrs.Attributes["ApproximateNumberOfMessages"] == "0" && attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages not consumed: %v", attrs.Attributes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSQSStaleRequestDropped: polls that waited in the request queue while
// the broker was down, longer than any client waits for its answer, are
// deleted unanswered and counted in the log; a proxy waiting at the time is
// kept for the fresh poll that follows.
func TestSQSStaleRequestDropped(t *testing.T) {
	defer func(d time.Duration) { sqsRequestMaxAge = d }(sqsRequestMaxAge)
	sqsRequestMaxAge = 2 * time.Second
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The broker is down: a client's poll waits in the queue, and the
	// client gives up.
	const name = "snowflake-broker-stale"
	client := newSQSClient(endpoint)
	queueURL := createBrokerQueue(ctx, t, client, name)
	poll, _ := (&messages.ClientPollRequest{Offer: testOffer, NAT: nat.Unknown}).Encode()
	const staleID = "5a1e5a1e5a1e5a1e"
	sendPoll(ctx, t, client, queueURL, staleID, string(poll))
	time.Sleep(sqsRequestMaxAge + 500*time.Millisecond)

	// The broker comes back with a proxy waiting.
	proxyRes := make(chan *messages.ProxyPollResponse, 1)
	f := startSQSBroker(ctx, t, endpoint, name, func(b *Broker) {
		go func() {
			proxyRes <- b.proxyPoll(ctx, &messages.ProxyPollRequest{Sid: "stale-sid", Version: "1.3", Type: "standalone",
				NAT: nat.Unrestricted, AcceptedRelayPattern: "snowflake.torproject.net$"}, netip.Addr{})
		}()
		waitWaiting(t, b, 1)
	})
	waitQueueEmpty(ctx, t, client, queueURL)
	select {
	case pr := <-proxyRes:
		t.Fatalf("a poll %v old was matched with the waiting proxy: %+v", sqsRequestMaxAge, pr)
	default:
	}
	if _, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(ClientQueuePrefix + staleID)}); err == nil {
		t.Errorf("a reply queue was created for the stale poll")
	}
	if line, ok := f.logs.waitLine("level=INFO", "stale", "count=1"); !ok {
		t.Errorf("no Info line counting the stale poll")
	} else if strings.Contains(line, staleID) {
		t.Errorf("the log names the client: %s", line)
	}

	// A fresh poll still gets the proxy.
	const freshID = "f4e5f4e5f4e5f4e5"
	sendPoll(ctx, t, client, queueURL, freshID, string(poll))
	if pr := <-proxyRes; pr.Status != messages.StatusClientMatch {
		t.Fatalf("proxy got %+v", pr)
	}
	if !f.b.answer("stale-sid", testAnswer) {
		t.Fatal("answer found no client")
	}
	body := receiveResponse(ctx, t, client, freshID)
	if resp, err := messages.DecodeClientPollResponse([]byte(body)); err != nil || resp.Answer != testAnswer {
		t.Fatalf("client got %s (%v)", body, err)
	}
}

// TestSQSRequestAge: SentTimestamp is the SQS service's, in milliseconds
// since the epoch; now is the broker's. A poll without a usable one is taken as fresh: better
// a possibly wasted match than a client never answered.
func TestSQSRequestAge(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		stale bool
	}{
		{"no attributes", nil, false},
		{"no SentTimestamp", map[string]string{"ApproximateReceiveCount": "1"}, false},
		{"fresh", map[string]string{"SentTimestamp": "1699999999000"}, false},
		{"just under the limit", map[string]string{"SentTimestamp": "1699999970001"}, false},
		{"over the limit", map[string]string{"SentTimestamp": "1699999969999"}, true},
		{"from the future", map[string]string{"SentTimestamp": "1800000000000"}, false},
		{"empty", map[string]string{"SentTimestamp": ""}, false},
		{"not a number", map[string]string{"SentTimestamp": "yesterday"}, false},
		{"seconds with a fraction", map[string]string{"SentTimestamp": "1699999000.5"}, false},
		{"zero", map[string]string{"SentTimestamp": "0"}, false},
		{"negative", map[string]string{"SentTimestamp": "-1"}, false},
		{"overflow", map[string]string{"SentTimestamp": "99999999999999999999999"}, false},
		{"max int64", map[string]string{"SentTimestamp": "9223372036854775807"}, false},
		// On a first delivery the age is read off the SQS service's clock
		// alone (ApproximateFirstReceiveTimestamp is this receive), so a
		// broker clock that is off does not drop every poll, nor keep
		// stale ones.
		{"first delivery, broker clock 1 h fast", map[string]string{"SentTimestamp": "1699996400000",
			"ApproximateFirstReceiveTimestamp": "1699996401000", "ApproximateReceiveCount": "1"}, false},
		{"first delivery, broker clock 1 h slow", map[string]string{"SentTimestamp": "1700003000000",
			"ApproximateFirstReceiveTimestamp": "1700003600000", "ApproximateReceiveCount": "1"}, true},
		// A poll delivered before (its visibility timeout ran out while a
		// broker held it) is judged by the broker's clock: its first
		// delivery says nothing of now.
		{"redelivery", map[string]string{"SentTimestamp": "1699999900000",
			"ApproximateFirstReceiveTimestamp": "1699999901000", "ApproximateReceiveCount": "2"}, true},
		{"malformed first receive", map[string]string{"SentTimestamp": "1699999999000",
			"ApproximateFirstReceiveTimestamp": "soon", "ApproximateReceiveCount": "1"}, false},
	} {
		m := types.Message{Attributes: tc.attrs}
		if got := staleRequest(m, now, 30*time.Second); got != tc.stale {
			t.Errorf("%s: staleRequest = %v, want %v", tc.name, got, tc.stale)
		}
	}
}

// TestSQSRequestQueueRecreated: when the request queue is deleted under a
// running broker (by an operator, or by the SQS service), the broker
// creates it again, as at start, and goes on answering polls.
func TestSQSRequestQueueRecreated(t *testing.T) {
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name = "snowflake-broker-deleted"
	f := startSQSBroker(ctx, t, endpoint, name, nil)
	if _, err := f.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(f.queueURL)}); err != nil {
		t.Fatal(err)
	}

	var attrs map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := f.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err == nil {
			a, err := f.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
				AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameMessageRetentionPeriod}})
			if err != nil {
				t.Fatal(err)
			}
			f.queueURL, attrs = aws.ToString(out.QueueUrl), a.Attributes
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted request queue was not created again in 10 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := attrs[string(types.QueueAttributeNameMessageRetentionPeriod)]; got != sqsRetention {
		t.Errorf("recreated queue keeps messages %s s, want %s s", got, sqsRetention)
	}
	if _, ok := f.logs.waitLine("level=WARN", name); !ok {
		t.Errorf("no warning names the recreated queue")
	}

	poll, _ := (&messages.ClientPollRequest{Offer: testOffer, NAT: nat.Unknown}).Encode()
	sendPoll(ctx, t, f.client, f.queueURL, "3333333333333333", string(poll))
	if body := receiveResponse(ctx, t, f.client, "3333333333333333"); body != `{"error":"no snowflake proxies currently available"}` {
		t.Fatalf("poll after the queue came back: %s", body)
	}
}
