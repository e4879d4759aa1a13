package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

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

// sqsTestOldAge is a QueueMaxAge that every queue passes once
// waitSQSSecond has returned.
const sqsTestOldAge = 500 * time.Millisecond

// waitSQSSecond waits until queues created at created are a second old.
// SQS's timestamps are whole seconds, so the sweep then finds them older
// than sqsTestOldAge by SQS's clock: tests age queues this way, as the
// broker's clock no longer counts.
func waitSQSSecond(created time.Time) {
	time.Sleep(time.Until(created.Add(1100 * time.Millisecond)))
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
	created := time.Now()

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
	waitSQSSecond(created)
	l.cfg = &SQSConfig{QueueMaxAge: sqsTestOldAge}
	if deleted, err := l.cleanup(ctx, time.Now()); err != nil || deleted != n {
		t.Fatalf("cleanup of old queues deleted %d (%v), want %d", deleted, err, n)
	}
	if left := countClientQueues(ctx, t, client); left != 0 {
		t.Errorf("%d client queues left after the sweep", left)
	}
}

// TestSQSCleanupBrokerClockOff: a client queue's age is SQS's clock
// (LastModifiedTimestamp) against SQS's clock, not the broker's. A broker
// clock an hour slow must not keep a dead queue for an hour more; an hour
// fast, it must not delete a queue just created, whose client is still
// waiting for its answer.
func TestSQSCleanupBrokerClockOff(t *testing.T) {
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := newSQSClient(endpoint)
	l := &sqsListener{api: newSQSClient(endpoint)}

	createClientQueues(ctx, t, client, 1)
	created := time.Now()
	waitSQSSecond(created)
	l.cfg = &SQSConfig{QueueMaxAge: sqsTestOldAge}
	if deleted, err := l.cleanup(ctx, time.Now().Add(-time.Hour)); err != nil || deleted != 1 {
		t.Errorf("a broker clock an hour slow: cleanup deleted %d dead queues (%v), want 1", deleted, err)
	}
	if left := countClientQueues(ctx, t, client); left != 0 {
		t.Errorf("a broker clock an hour slow: %d dead queues left", left)
	}

	createClientQueues(ctx, t, client, 1)
	l.cfg = &SQSConfig{QueueMaxAge: 10 * time.Minute}
	if deleted, err := l.cleanup(ctx, time.Now().Add(time.Hour)); err != nil || deleted != 0 {
		t.Errorf("a broker clock an hour fast: cleanup deleted %d live queues (%v), want 0", deleted, err)
	}
	if left := countClientQueues(ctx, t, client); left != 1 {
		t.Errorf("a broker clock an hour fast: %d live queues left, want 1", left)
	}
}

// TestSQSServerTimeFallback: an answer without a Date leaves the sweep the
// broker's clock, as before, rather than an age measured from year 1.
func TestSQSServerTimeFallback(t *testing.T) {
	now := time.Now()
	if got := sqsServerTime(middleware.Metadata{}, now); !got.Equal(now) {
		t.Errorf("sqsServerTime(no Date) = %v, want the fallback %v", got, now)
	}
}

// rivalSweepSQS deletes every queue through rival just before the call
// named in before reaches it, as the sweep of another listener in the same
// account (another -sqs-profiles entry, or a second broker) does when it
// gets there first.
type rivalSweepSQS struct {
	SQSAPI
	rival  SQSAPI
	before string
}

func (r *rivalSweepSQS) deleteFirst(ctx context.Context, url *string, call string) error {
	if call != r.before {
		return nil
	}
	_, err := r.rival.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: url})
	return err
}

func (r *rivalSweepSQS) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	if err := r.deleteFirst(ctx, in.QueueUrl, "GetQueueAttributes"); err != nil {
		return nil, err
	}
	return r.SQSAPI.GetQueueAttributes(ctx, in, opts...)
}

func (r *rivalSweepSQS) DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, opts ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error) {
	if err := r.deleteFirst(ctx, in.QueueUrl, "DeleteQueue"); err != nil {
		return nil, err
	}
	return r.SQSAPI.DeleteQueue(ctx, in, opts...)
}

// TestSQSCleanupQueueGone: a queue that another sweep deleted between the
// listing and our call is what the sweep wanted, not a failure to warn of
// at every sweep.
func TestSQSCleanupQueueGone(t *testing.T) {
	endpoint := sqstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := newSQSClient(endpoint)
	for _, before := range []string{"GetQueueAttributes", "DeleteQueue"} {
		const n = 3
		createClientQueues(ctx, t, client, n)
		waitSQSSecond(time.Now())
		api := &rivalSweepSQS{SQSAPI: newSQSClient(endpoint), rival: client, before: before}
		l := &sqsListener{api: api, cfg: &SQSConfig{QueueMaxAge: sqsTestOldAge}}
		if deleted, err := l.cleanup(ctx, time.Now()); err != nil || deleted != 0 {
			t.Errorf("queues deleted by another sweep before %s: cleanup deleted %d, err %v; want 0, no error", before, deleted, err)
		}
		if left := countClientQueues(ctx, t, client); left != 0 {
			t.Errorf("%d client queues left", left)
		}
	}
}

// deniedSQS lists n client queues and refuses to read any of them, as SQS
// does once the broker's credentials lose GetQueueAttributes.
type deniedSQS struct {
	SQSAPI
	n int
}

func (d deniedSQS) ListQueues(context.Context, *sqs.ListQueuesInput, ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error) {
	out := &sqs.ListQueuesOutput{}
	for i := range d.n {
		out.QueueUrls = append(out.QueueUrls, fmt.Sprintf("http://sqs.invalid/%s%016d", ClientQueuePrefix, i))
	}
	return out, nil
}

func (deniedSQS) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return nil, errors.New("AccessDenied: the broker's user may not call sqs:GetQueueAttributes on this queue")
}

// TestSQSCleanupErrorBounded: when every queue of a sweep fails, the
// sweep's error (one Warn line per sweep, every 30 s) stays one line's
// worth, however many queues there are, and says how many failed.
func TestSQSCleanupErrorBounded(t *testing.T) {
	const n = 2000
	l := &sqsListener{api: deniedSQS{n: n}, cfg: &SQSConfig{QueueMaxAge: time.Hour}}
	deleted, err := l.cleanup(context.Background(), time.Now())
	if deleted != 0 || err == nil {
		t.Fatalf("cleanup = %d, %v; want 0 and an error", deleted, err)
	}
	if !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), fmt.Sprint(n)) {
		t.Errorf("error %.300q… names neither the failure nor the %d queues it hit", err, n)
	}
	if len(err.Error()) > 1000 {
		t.Errorf("a sweep of %d failing queues returns a %d-byte error", n, len(err.Error()))
	}
}
