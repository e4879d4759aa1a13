package rendezvous

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/snowflake-go/snowflake/internal/sqstest"
)

// TestSQSExchange runs the client side against a local SQS server, with
// the test playing the broker's part of wire protocol §2.5.
func TestSQSExchange(t *testing.T) {
	endpoint := sqstest.Start(t)
	creds := SQSCredentials{AccessKeyID: "AKIDTEST", SecretKey: "secret"}
	broker := sqs.New(sqs.Options{
		Region:       sqstest.Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretKey, ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := broker.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("snowflake-broker")})
	if err != nil {
		t.Fatal(err)
	}

	brokerErr := make(chan error, 1)
	go func() {
		brokerErr <- func() error {
			// local-aws-sqs answers a long poll only when its wait
			// time ends, even if a message arrived; poll briefly.
			var out *sqs.ReceiveMessageOutput
			for {
				var err error
				out, err = broker.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0,
					MessageAttributeNames: []string{"All"},
				})
				if err != nil {
					return err
				}
				if len(out.Messages) > 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(out.Messages) != 1 {
				t.Errorf("broker received %d messages", len(out.Messages))
				return nil
			}
			m := out.Messages[0]
			if aws.ToString(m.Body) != pollBody {
				t.Errorf("broker got body %q", aws.ToString(m.Body))
			}
			id := aws.ToString(m.MessageAttributes["ClientID"].StringValue)
			if len(id) != 16 {
				t.Errorf("ClientID attribute %q", id)
			}
			rq, err := broker.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(SQSResponseQueuePrefix + id)})
			if err != nil {
				return err
			}
			_, err = broker.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: rq.QueueUrl, MessageBody: aws.String(`{"answer":"via sqs"}`)})
			return err
		}()
	}()

	m, err := NewSQS(aws.ToString(q.QueueUrl), creds, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := m.Exchange(ctx, []byte(pollBody))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"answer":"via sqs"}` {
		t.Errorf("response %q", got)
	}
	if err := <-brokerErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("SQS rendezvous took %v", time.Since(start))
}

// TestSQSNoBroker: nobody answers, so the response queue never appears.
func TestSQSNoBroker(t *testing.T) {
	endpoint := sqstest.Start(t)
	creds := SQSCredentials{AccessKeyID: "AKIDTEST", SecretKey: "secret"}
	broker := sqs.New(sqs.Options{Region: sqstest.Region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretKey, "")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := broker.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("snowflake-broker")})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewSQS(aws.ToString(q.QueueUrl), creds, nil)
	var pauses int
	m.pause = func(ctx context.Context, d time.Duration) error {
		pauses++
		return sleepCtx(ctx, d/20)
	}
	if _, err := m.Exchange(ctx, []byte(pollBody)); err == nil {
		t.Fatal("exchange without a broker succeeded")
	}
	// A queue the broker has not created yet is waited for: the first
	// wait, then one pause between each two GetQueueUrl calls.
	if want := 1 + sqsQueueURLTries - 1; pauses != want {
		t.Errorf("%d pauses, want %d: GetQueueUrl was not retried while the queue was missing", pauses, want)
	}
}

// TestSQSStalledEndpoint: an SQS endpoint (or a middlebox on the path) that
// sends response headers and then nothing more must not hold a rendezvous
// for good. The client's session context has no deadline, so every SQS call
// needs a bound of its own, as the HTTP and AMP exchanges have.
func TestSQSStalledEndpoint(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stallMidResponse(w, r, `{"MessageId":`, release)
	}))
	defer srv.Close()
	defer close(release)
	rt, err := NewRoundTripper(TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewSQS(srv.URL+"/"+sqstest.AccountID+"/snowflake-broker",
		SQSCredentials{AccessKeyID: "AKIDTEST", SecretKey: "secret"}, &http.Client{Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Exchange(context.Background(), []byte(pollBody))
		done <- err
	}()
	// Each call may take ResponseHeaderTimeout, as an HTTP exchange may.
	limit := ResponseHeaderTimeout + 5*time.Second
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("exchange with a stalled endpoint succeeded")
		}
		t.Logf("exchange failed as it should: %v", err)
	case <-time.After(limit):
		t.Fatalf("Exchange still blocked after %v on an endpoint that stalled mid-response", limit)
	}
}

// TestSQSResponseQueueStalled: waiting for the response queue retries
// GetQueueUrl while the broker has not created the queue yet, but a call
// that failed otherwise (here, one that stalled until its deadline) is not
// a queue still to come: retrying it would hold the rendezvous for
// sqsQueueURLTries call deadlines, minutes, instead of one.
func TestSQSResponseQueueStalled(t *testing.T) {
	endpoint := sqstest.Start(t)
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// Calls are counted by the SDK's invocation id, which its own retries
	// of one call keep: a header timeout racing the call's deadline on a
	// loaded machine may be retried by the SDK once, but our loop must
	// not call again.
	var (
		callsMu  sync.Mutex
		calls    = map[string]bool{}
		attempts atomic.Int32
	)
	getQueueURLs := func() int {
		callsMu.Lock()
		defer callsMu.Unlock()
		return len(calls)
	}
	release := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonSQS.GetQueueUrl" {
			proxy.ServeHTTP(w, r)
			return
		}
		attempts.Add(1)
		callsMu.Lock()
		calls[r.Header.Get("Amz-Sdk-Invocation-Id")] = true
		callsMu.Unlock()
		stallMidResponse(w, r, `{"QueueUrl":`, release)
	}))
	defer srv.Close()
	defer close(release)

	creds := SQSCredentials{AccessKeyID: "AKIDTEST", SecretKey: "secret"}
	admin := sqs.New(sqs.Options{Region: sqstest.Region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretKey, "")})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q, err := admin.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("snowflake-broker")})
	if err != nil {
		t.Fatal(err)
	}
	queueURL, err := url.Parse(aws.ToString(q.QueueUrl))
	if err != nil {
		t.Fatal(err)
	}
	queueURL.Host = strings.TrimPrefix(srv.URL, "http://")
	rt, err := NewRoundTripper(TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewSQS(queueURL.String(), creds, &http.Client{Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	m.pause = func(ctx context.Context, d time.Duration) error { return sleepCtx(ctx, d/20) }
	done := make(chan error, 1)
	go func() {
		_, err := m.Exchange(ctx, []byte(pollBody))
		done <- err
	}()
	limit := 2*ResponseHeaderTimeout + 5*time.Second
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("exchange with a stalled GetQueueUrl succeeded")
		}
		t.Logf("exchange failed as it should: %v", err)
	case <-time.After(limit):
		t.Fatalf("Exchange still blocked after %v, %d GetQueueUrl calls", limit, getQueueURLs())
	}
	if n := getQueueURLs(); n != 1 {
		t.Errorf("%d GetQueueUrl calls (%d attempts), want 1", n, attempts.Load())
	}
}

// stallMidResponse answers an SQS call with its headers and the start of a
// body, then sends nothing more until release is closed or the client
// leaves, as an endpoint or middlebox that hangs would.
func stallMidResponse(w http.ResponseWriter, r *http.Request, start string, release <-chan struct{}) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, start)
	w.(http.Flusher).Flush()
	select {
	case <-release:
	case <-r.Context().Done():
	}
}
