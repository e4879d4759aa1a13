package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// stallSQS is an SQS endpoint that accepts requests and never answers the
// ones its stall function selects: each such call returns only when its
// context ends.
type stallSQS struct {
	SQSAPI
	stall    func(op string, n int64) bool
	receives atomic.Int64
	creates  atomic.Int64
	sent     chan string
	deleted  chan struct{}
}

func (s *stallSQS) wait(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallSQS) CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, _ ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	if n := s.creates.Add(1); s.stall("create", n) {
		return nil, s.wait(ctx)
	}
	return &sqs.CreateQueueOutput{QueueUrl: aws.String("https://sqs.test/1/" + aws.ToString(in.QueueName))}, nil
}

func (s *stallSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	n := s.receives.Add(1)
	if s.stall("receive", n) {
		return nil, s.wait(ctx)
	}
	if n == 2 {
		return &sqs.ReceiveMessageOutput{Messages: []types.Message{{
			Body:          aws.String("2.0\n{}"),
			ReceiptHandle: aws.String("r"),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"ClientID": {DataType: aws.String("String"), StringValue: aws.String("0123456789abcdef")},
			},
		}}}, nil
	}
	// Nothing more: an ordinary empty long poll.
	select {
	case <-time.After(time.Duration(in.WaitTimeSeconds) * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &sqs.ReceiveMessageOutput{}, nil
}

func (s *stallSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if s.stall("send", 0) {
		return nil, s.wait(ctx)
	}
	s.sent <- aws.ToString(in.MessageBody)
	return &sqs.SendMessageOutput{}, nil
}

func (s *stallSQS) DeleteMessage(ctx context.Context, _ *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	s.deleted <- struct{}{}
	return &sqs.DeleteMessageOutput{}, nil
}

// TestSQSStalledEndpoint: an SQS endpoint that stops answering (a
// half-open connection, an overloaded proxy) must not stall the broker's
// SQS rendezvous for good: every call is bounded by a deadline, after which
// the loop carries on.
func TestSQSStalledEndpoint(t *testing.T) {
	defer func(d time.Duration) { sqsCallTimeout = d }(sqsCallTimeout)
	sqsCallTimeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name  string
		stall func(op string, n int64) bool
		// wantSent: whether the client still gets its response.
		wantSent bool
	}{
		// The first receive hangs; the next one brings the poll.
		{"receive", func(op string, n int64) bool { return op == "receive" && n == 1 }, true},
		// Creating the client queue hangs: the message is dropped, and
		// its handler does not hold a slot forever.
		{"create", func(op string, n int64) bool { return op == "create" && n == 2 }, false},
		// Sending the response hangs.
		{"send", func(op string, n int64) bool { return op == "send" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &stallSQS{stall: tc.stall, sent: make(chan string, 10), deleted: make(chan struct{}, 10)}
			b, err := New(Config{
				Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
				AllowedRelayPattern: "snowflake.torproject.net$",
				ClientTimeout:       time.Second,
				SQS: &SQSConfig{QueueName: "q", Clients: []SQSAPI{api},
					CleanupInterval: time.Hour, QueueMaxAge: time.Hour, ReceiveWait: time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.runSQS(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			timeout := time.After(10 * time.Second)
			if tc.wantSent {
				select {
				case body := <-api.sent:
					if body != `{"error":"unsupported message version"}` {
						t.Errorf("response %s", body)
					}
				case <-timeout:
					t.Fatalf("no response sent: the broker is stuck in a stalled call (%d receives)", api.receives.Load())
				}
			}
			// The request message is deleted once its handler ends.
			select {
			case <-api.deleted:
			case <-timeout:
				t.Fatalf("message never deleted: its handler is stuck in a stalled call")
			}
		})
	}
}

// refusingSQS refuses to create any queue, as SQS does for a profile whose
// credentials are wrong.
type refusingSQS struct{ SQSAPI }

func (refusingSQS) CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error) {
	return nil, errors.New("InvalidClientTokenId: the security token included in the request is invalid")
}

// TestSQSProfileFailsAtStart: with several credential profiles, one that
// cannot open the queue at start stops the SQS rendezvous at once, as the
// only profile would: its error is not held back until shutdown while the
// broker runs without it.
func TestSQSProfileFailsAtStart(t *testing.T) {
	good := &stallSQS{stall: func(string, int64) bool { return false }, sent: make(chan string, 10), deleted: make(chan struct{}, 10)}
	b, err := New(Config{
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
		AllowedRelayPattern: "snowflake.torproject.net$",
		SQS: &SQSConfig{QueueName: "q", Clients: []SQSAPI{good, refusingSQS{}},
			CleanupInterval: time.Hour, QueueMaxAge: time.Hour, ReceiveWait: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.runSQS(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "InvalidClientTokenId") {
			t.Fatalf("runSQS = %v, want the refused profile's error", err)
		}
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatalf("a profile failed at start, and 5 s later the SQS rendezvous still runs without reporting it (on stop: %v)", <-done)
	}
}
