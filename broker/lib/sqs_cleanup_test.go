package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/snowflake-go/snowflake/internal/sqstest"
)

// slowAttrsSQS delays every GetQueueAttributes by delay, as a distant or
// busy SQS endpoint does, and records how many were in flight at once.
type slowAttrsSQS struct {
	SQSAPI
	delay time.Duration

	mu          sync.Mutex
	calls       int
	inFlight    int
	maxInFlight int
}

func (s *slowAttrsSQS) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	s.mu.Lock()
	s.calls++
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.SQSAPI.GetQueueAttributes(ctx, in, opts...)
}

func (s *slowAttrsSQS) stats() (calls, maxInFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.maxInFlight
}

// createClientQueues creates n client reply queues, as the broker does for
// n client polls.
func createClientQueues(ctx context.Context, t *testing.T, c *sqs.Client, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s%016d", ClientQueuePrefix, i)
		if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
}

// countClientQueues returns how many client reply queues exist.
func countClientQueues(ctx context.Context, t *testing.T, c *sqs.Client) int {
	t.Helper()
	list, err := c.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(ClientQueuePrefix)})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.QueueUrls)
}

// TestSQSCleanupConcurrent: a busy broker has thousands of client queues,
// each read by one GetQueueAttributes per sweep; one after another, at an
// endpoint's round trip each, a sweep falls behind the queues created
// meanwhile. The sweep reads several at once, never more than
// sqsCleanupWorkers, and still examines and deletes every queue.
func TestSQSCleanupConcurrent(t *testing.T) {
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := newSQSClient(endpoint)
	const n = 24
	createClientQueues(ctx, t, client, n)

	api := &slowAttrsSQS{SQSAPI: newSQSClient(endpoint), delay: 100 * time.Millisecond}
	l := &sqsListener{api: api, cfg: &SQSConfig{QueueMaxAge: time.Hour}}
	start := time.Now()
	if deleted, err := l.cleanup(ctx, time.Now()); err != nil || deleted != 0 {
		t.Fatalf("cleanup of young queues deleted %d (%v), want 0", deleted, err)
	}
	calls, most := api.stats()
	t.Logf("a sweep of %d queues took %v, at most %d GetQueueAttributes at once", n, time.Since(start), most)
	if calls != n {
		t.Errorf("%d GetQueueAttributes calls for %d queues", calls, n)
	}
	if most < 2 || most > sqsCleanupWorkers {
		t.Errorf("at most %d GetQueueAttributes at once, want 2 to %d", most, sqsCleanupWorkers)
	}

	// Every old queue is deleted, none left behind by the workers.
	if deleted, err := l.cleanup(ctx, time.Now().Add(2*time.Hour)); err != nil || deleted != n {
		t.Fatalf("cleanup of old queues deleted %d (%v), want %d", deleted, err, n)
	}
	if left := countClientQueues(ctx, t, client); left != 0 {
		t.Errorf("%d client queues left after the sweep", left)
	}
}
