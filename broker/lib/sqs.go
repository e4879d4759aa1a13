package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/sqserr"
)

// SQS rendezvous constants (wire-protocol §2.5, §2.11).
const (
	// ClientQueuePrefix starts the name of every per-client response
	// queue; the rest is the client's ClientID attribute.
	ClientQueuePrefix = "snowflake-client-"
	// sqsRetention is the broker queue's message retention: a poll older
	// than this is useless anyway.
	sqsRetention = "300"
	// sqsReceiveMax and sqsReceiveWait shape the broker's long poll.
	sqsReceiveMax = 10
	// DefaultSQSReceiveWait is the broker's long-poll duration.
	DefaultSQSReceiveWait = 15 * time.Second
	// sqsMaxInFlight bounds concurrently handled messages (each holds a
	// goroutine for up to the client wait plus the client timeout).
	sqsMaxInFlight = 1000
	// sqsRetryDelay is the pause after a failed receive.
	sqsRetryDelay = time.Second
	// sqsStaleLogEvery bounds how long dropped stale polls go unreported
	// while a backlog of them lasts.
	sqsStaleLogEvery = time.Minute
)

// SQSRequestMaxAge is the age past which a client poll found in the request
// queue is deleted unanswered. The broker creates a client's reply queue
// when it picks the poll up, and a client stops looking for that queue
// about 20 s after sending: common/rendezvous waits 1 s, then tries
// GetQueueUrl 20 times 1 s apart (upstream clients give up sooner, after
// 1 s and 5 tries). An older poll has nobody waiting for its answer, yet
// matching it would hold a volunteer proxy's slot for the whole client
// timeout; after broker downtime the queue (retention 300 s) holds minutes
// of such polls. The 10 s above those 20 s cover the client's API round
// trips and the difference between the SQS service's clock, which stamps
// SentTimestamp, and the broker's.
const SQSRequestMaxAge = 30 * time.Second

// sqsRequestMaxAge is SQSRequestMaxAge; tests shorten it.
var sqsRequestMaxAge = SQSRequestMaxAge

// sqsAgeAttributes are the message attributes staleRequest reads.
var sqsAgeAttributes = []types.MessageSystemAttributeName{
	types.MessageSystemAttributeNameSentTimestamp,
	types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp,
	types.MessageSystemAttributeNameApproximateReceiveCount,
}

// sqsAgeQueueAttributes are sqsAgeAttributes in the older parameter's type.
var sqsAgeQueueAttributes = func() []types.QueueAttributeName {
	names := make([]types.QueueAttributeName, len(sqsAgeAttributes))
	for i, n := range sqsAgeAttributes {
		names[i] = types.QueueAttributeName(n)
	}
	return names
}()

// sqsCallTimeout bounds every SQS call other than the wait of a long poll:
// the SDK's HTTP client has no deadline of its own, so a stalled endpoint
// would otherwise hold the receive loop or a message handler forever.
var sqsCallTimeout = 10 * time.Second

// sqsCall runs one SQS call under ctx and a deadline of extra plus
// sqsCallTimeout.
func sqsCall[T any](ctx context.Context, extra time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, extra+sqsCallTimeout)
	defer cancel()
	return f(ctx)
}

// SQSAPI is the part of *sqs.Client the broker uses.
type SQSAPI interface {
	CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ListQueues(context.Context, *sqs.ListQueuesInput, ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	DeleteQueue(context.Context, *sqs.DeleteQueueInput, ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
}

// SQSConfig configures the SQS rendezvous.
type SQSConfig struct {
	// QueueName is the broker's request queue, created if missing.
	QueueName string
	// Clients are SQS clients (one per credential profile); the broker
	// listens on the queue through each of them.
	Clients []SQSAPI
	// CleanupInterval is the period of the stale-queue sweep.
	CleanupInterval time.Duration
	// QueueMaxAge is the age after which a client queue is deleted.
	QueueMaxAge time.Duration
	// ReceiveWait is the long-poll duration of each receive (whole
	// seconds, at most 20). Some local SQS emulators hold a receive for
	// the full duration even when a message arrives, so tests shorten it.
	ReceiveWait time.Duration
}

func (c *SQSConfig) validate() error {
	if c.QueueName == "" {
		return errors.New("SQS queue name is empty")
	}
	if len(c.Clients) == 0 {
		return errors.New("SQS has no clients")
	}
	if c.CleanupInterval < 0 || c.QueueMaxAge < 0 {
		return errors.New("negative SQS duration")
	}
	// A receive waits whole seconds: under one second it would be a short
	// poll, and the receive loop would spin against an empty queue.
	if c.ReceiveWait != 0 && (c.ReceiveWait < time.Second || c.ReceiveWait > 20*time.Second) {
		return fmt.Errorf("SQS receive wait %v: must be 1 s to 20 s", c.ReceiveWait)
	}
	return nil
}

// validClientID accepts what can follow ClientQueuePrefix in a queue name
// (SQS allows 80 alphanumeric, '-' and '_' characters in all).
func validClientID(id string) bool {
	if id == "" || len(id) > 80-len(ClientQueuePrefix) {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sqsListener serves client polls arriving through one SQS client.
type sqsListener struct {
	b   *Broker
	api SQSAPI
	cfg *SQSConfig
	// mu guards queueURL: the receive loop replaces it when it creates a
	// deleted request queue again, while handlers read it.
	mu       sync.Mutex
	queueURL string
}

func (l *sqsListener) requestQueue() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queueURL
}

func (l *sqsListener) setRequestQueue(url string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queueURL = url
}

// runSQS serves the SQS rendezvous through every configured client until
// ctx ends. A listener fails only when it cannot open the queue at start;
// that stops the others too, so that a broken profile among several is as
// fatal as a broken only one, rather than reported at shutdown.
func (b *Broker) runSQS(ctx context.Context) error {
	cfg := b.cfg.SQS
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(cfg.Clients))
	for i, api := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &sqsListener{b: b, api: api, cfg: cfg}
			if errs[i] = l.run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// createRequestQueue creates the broker's request queue, or opens it if it
// exists, and makes it the one the listener receives from.
func (l *sqsListener) createRequestQueue(ctx context.Context) error {
	out, err := sqsCall(ctx, 0, func(ctx context.Context) (*sqs.CreateQueueOutput, error) {
		return l.api.CreateQueue(ctx, &sqs.CreateQueueInput{
			QueueName: aws.String(l.cfg.QueueName),
			Attributes: map[string]string{
				string(types.QueueAttributeNameMessageRetentionPeriod): sqsRetention,
			},
		})
	})
	if err != nil {
		return fmt.Errorf("broker: sqs: create queue %s: %w", l.cfg.QueueName, err)
	}
	l.setRequestQueue(aws.ToString(out.QueueUrl))
	return nil
}

func (l *sqsListener) run(ctx context.Context) error {
	if err := l.createRequestQueue(ctx); err != nil {
		return err
	}
	l.b.log.Info("listening on SQS queue", "queue", l.cfg.QueueName)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.cleanupLoop(ctx)
	}()
	sem := make(chan struct{}, sqsMaxInFlight)
	var stale staleTally
	defer func() { l.reportStale(&stale, 0, time.Now()) }()
	for {
		res, err := sqsCall(ctx, l.cfg.ReceiveWait, func(ctx context.Context) (*sqs.ReceiveMessageOutput, error) {
			return l.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl:              aws.String(l.requestQueue()),
				MaxNumberOfMessages:   sqsReceiveMax,
				WaitTimeSeconds:       int32(l.cfg.ReceiveWait / time.Second),
				MessageAttributeNames: []string{"All"},
				// These tell stale polls apart (staleRequest).
				// SQS-compatible servers that predate
				// MessageSystemAttributeNames read only the deprecated
				// AttributeNames; SQS takes both.
				MessageSystemAttributeNames: sqsAgeAttributes,
				AttributeNames:              sqsAgeQueueAttributes,
			})
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && sqserr.QueueMissing(err) {
			// Deleted under us (by an operator, or by SQS): receiving
			// would fail for ever. SQS refuses the name for 60 s after a
			// deletion; until then the loop keeps retrying.
			l.b.log.Warn("sqs: request queue missing; creating it again", "queue", l.cfg.QueueName, "err", err)
			if err = l.createRequestQueue(ctx); err == nil {
				l.b.log.Warn("sqs: request queue created again; polls sent meanwhile are lost", "queue", l.cfg.QueueName)
				continue
			}
		}
		if err != nil {
			l.b.log.Warn("sqs receive", "err", err)
			select {
			case <-time.After(sqsRetryDelay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		now := time.Now()
		dropped := 0
		for _, m := range res.Messages {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			work := l.handle
			if staleRequest(m, now, sqsRequestMaxAge) {
				// Its client has given up: delete it unanswered.
				dropped++
				work = l.deleteRequest
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := work(ctx, m); err != nil {
					l.b.log.Warn("sqs message", "err", err)
				}
			}()
		}
		l.reportStale(&stale, dropped, now)
	}
}

// staleRequest reports whether poll m was sent more than maxAge before now,
// by its SentTimestamp attribute (stamped by the SQS service). A poll
// without a usable stamp counts as fresh: a match that may be wasted is
// better than a client left unanswered.
//
// On a poll's first delivery ApproximateFirstReceiveTimestamp is this very
// receive, stamped by the same clock as SentTimestamp, so the age is taken
// from the two: a broker clock that is off by maxAge would otherwise drop
// every poll, or keep every stale one. A poll delivered before (a broker
// held it past the visibility timeout) is measured against now.
func staleRequest(m types.Message, now time.Time, maxAge time.Duration) bool {
	sent, ok := sqsTimestamp(m, types.MessageSystemAttributeNameSentTimestamp)
	if !ok {
		return false
	}
	if first, ok := sqsTimestamp(m, types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp); ok &&
		m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] == "1" {
		now = first
	}
	return now.Sub(sent) > maxAge
}

// sqsTimestamp reads message attribute name, in milliseconds since the
// epoch; ok is false if it is missing or not a positive integer.
func sqsTimestamp(m types.Message, name types.MessageSystemAttributeName) (t time.Time, ok bool) {
	v, ok := m.Attributes[string(name)]
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// deleteRequest removes poll m from the request queue. It uses a context
// that outlives ctx, so that a poll being handled at shutdown is not
// handled again by the next broker.
func (l *sqsListener) deleteRequest(ctx context.Context, m types.Message) error {
	_, err := sqsCall(context.WithoutCancel(ctx), 0, func(ctx context.Context) (*sqs.DeleteMessageOutput, error) {
		return l.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{
			QueueUrl: aws.String(l.requestQueue()), ReceiptHandle: m.ReceiptHandle,
		})
	})
	if err != nil {
		return fmt.Errorf("broker: sqs: delete message: %w", err)
	}
	return nil
}

// staleTally counts stale polls dropped and not yet reported.
type staleTally struct {
	n     int
	since time.Time
}

// reportStale adds the dropped polls of one receive to t and logs the
// count once a run of them ends (a receive with none), or every
// sqsStaleLogEvery while a backlog lasts: one line per backlog rather than
// one per receive of ten.
func (l *sqsListener) reportStale(t *staleTally, dropped int, now time.Time) {
	if dropped > 0 {
		if t.n == 0 {
			t.since = now
		}
		t.n += dropped
	}
	if t.n == 0 || dropped > 0 && now.Sub(t.since) < sqsStaleLogEvery {
		return
	}
	l.b.log.Info("sqs: dropped stale client polls, older than any client waits for",
		"count", t.n, "max_age", sqsRequestMaxAge)
	t.n = 0
}

// handle answers one client poll message.
func (l *sqsListener) handle(ctx context.Context, m types.Message) error {
	// The request message is deleted whatever happens: a poll is only
	// useful once, and a malformed one would come back after the
	// visibility timeout.
	defer func() {
		if err := l.deleteRequest(ctx, m); err != nil {
			l.b.log.Warn("sqs delete message", "err", err)
		}
	}()
	attr, ok := m.MessageAttributes["ClientID"]
	if !ok || attr.StringValue == nil {
		return errors.New("broker: sqs: message without ClientID attribute ignored")
	}
	id := aws.ToString(attr.StringValue)
	if !validClientID(id) {
		// Anyone with the public credentials can send one: quote little
		// of it (an attribute may be 256 KB), so the log stays readable.
		if len(id) > 64 {
			return fmt.Errorf("broker: sqs: invalid ClientID %q… (%d bytes) ignored", id[:64], len(id))
		}
		return fmt.Errorf("broker: sqs: invalid ClientID %q ignored", id)
	}
	q, err := sqsCall(ctx, 0, func(ctx context.Context) (*sqs.CreateQueueOutput, error) {
		return l.api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(ClientQueuePrefix + id)})
	})
	if err != nil {
		return fmt.Errorf("broker: sqs: create client queue: %w", err)
	}
	var resp *messages.ClientPollResponse
	body := aws.ToString(m.Body)
	if len(body) > messages.MaxBodySize {
		resp = &messages.ClientPollResponse{Error: "request too large"}
	} else if req, err := messages.DecodeClientPollRequest([]byte(body)); err != nil {
		resp = &messages.ClientPollResponse{Error: messages.Reason(err)}
	} else {
		resp = l.b.ClientPoll(ctx, req, MethodSQS, offerAddr(req.Offer))
	}
	out, err := resp.Encode()
	if err != nil {
		return fmt.Errorf("broker: sqs: %w", err)
	}
	if _, err := sqsCall(ctx, 0, func(ctx context.Context) (*sqs.SendMessageOutput, error) {
		return l.api.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: q.QueueUrl, MessageBody: aws.String(string(out)),
		})
	}); err != nil {
		return fmt.Errorf("broker: sqs: send response: %w", err)
	}
	return nil
}

func (l *sqsListener) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(l.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := l.cleanup(ctx, time.Now()); err != nil {
			l.b.log.Warn("sqs cleanup", "err", err, "deleted", n)
		} else if n > 0 {
			l.b.log.Debug("sqs cleanup", "deleted", n)
		}
	}
}

// sqsCleanupWorkers bounds the client queues a sweep examines at once. A
// busy broker creates thousands of reply queues an hour, and each costs the
// sweep a GetQueueAttributes round trip (and a DeleteQueue when old): one
// after another, a sweep would take longer than the queues take to pile
// up. A few at a time keeps up without a burst that SQS would throttle.
const sqsCleanupWorkers = 8

// cleanup deletes client queues not modified for QueueMaxAge. It lists them
// page by page while sqsCleanupWorkers goroutines examine the listed ones;
// every call has its own deadline (sqsCall), so a stalled call delays
// one queue, and the sweep ends only when it has been through the whole
// listing or ctx ends.
func (l *sqsListener) cleanup(ctx context.Context, now time.Time) (int, error) {
	urls := make(chan string)
	var (
		mu      sync.Mutex
		deleted int
		failed  sweepFailures
		wg      sync.WaitGroup
	)
	for range sqsCleanupWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range urls {
				gone, err := l.expireQueue(ctx, u, now)
				mu.Lock()
				if gone {
					deleted++
				}
				failed.add(err)
				mu.Unlock()
			}
		}()
	}
	listErr := l.listClientQueues(ctx, urls)
	close(urls)
	wg.Wait()
	return deleted, errors.Join(listErr, failed.err())
}

// sweepFailures sums up the queues a sweep failed on: their number and the
// first error. The sweep's error is one log line per sweep, and through an
// endpoint that refuses every call (credentials that lost a permission)
// the errors of thousands of queues would make it a line of megabytes
// every CleanupInterval.
type sweepFailures struct {
	n     int
	first error
}

// add counts err, if it is one.
func (f *sweepFailures) add(err error) {
	if err == nil {
		return
	}
	if f.n == 0 {
		f.first = err
	}
	f.n++
}

// err is the first failure, with the count of all of them; nil if none.
func (f *sweepFailures) err() error {
	if f.n == 0 {
		return nil
	}
	return fmt.Errorf("%d client queues failed, the first with: %w", f.n, f.first)
}

// listClientQueues sends the URL of every client queue to urls, until the
// listing ends or ctx does.
func (l *sqsListener) listClientQueues(ctx context.Context, urls chan<- string) error {
	var token *string
	for {
		list, err := sqsCall(ctx, 0, func(ctx context.Context) (*sqs.ListQueuesOutput, error) {
			return l.api.ListQueues(ctx, &sqs.ListQueuesInput{
				QueueNamePrefix: aws.String(ClientQueuePrefix), NextToken: token, MaxResults: aws.Int32(1000),
			})
		})
		if err != nil {
			return fmt.Errorf("broker: sqs: list queues: %w", err)
		}
		for _, u := range list.QueueUrls {
			select {
			case urls <- u:
			case <-ctx.Done():
				return fmt.Errorf("broker: sqs: list queues: %w", ctx.Err())
			}
		}
		if aws.ToString(list.NextToken) == "" {
			return nil
		}
		token = list.NextToken
	}
}

// expireQueue deletes the client queue at url if it was not modified for
// QueueMaxAge, and reports whether it did. The age is measured on SQS's
// clock, which stamps LastModifiedTimestamp: "now" is the Date of SQS's
// answer to the same call (sqsServerTime). A broker clock minutes off would
// otherwise delete reply queues while their clients wait for the answer,
// or keep every dead one. now, the broker's clock, serves only a server
// whose answers carry no Date.
//
// A queue found missing is no error: another listener's sweep in the same
// account got there first, or SQS still lists a queue deleted in an
// earlier sweep (a deletion takes up to 60 s to settle).
func (l *sqsListener) expireQueue(ctx context.Context, url string, now time.Time) (bool, error) {
	attrs, err := sqsCall(ctx, 0, func(ctx context.Context) (*sqs.GetQueueAttributesOutput, error) {
		return l.api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(url),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameLastModifiedTimestamp},
		})
	})
	if sqserr.QueueMissing(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("broker: sqs: queue attributes: %w", err)
	}
	secs, err := strconv.ParseInt(attrs.Attributes[string(types.QueueAttributeNameLastModifiedTimestamp)], 10, 64)
	if err != nil {
		return false, fmt.Errorf("broker: sqs: LastModifiedTimestamp: %w", err)
	}
	if sqsServerTime(attrs.ResultMetadata, now).Sub(time.Unix(secs, 0)) <= l.cfg.QueueMaxAge {
		return false, nil
	}
	_, err = sqsCall(ctx, 0, func(ctx context.Context) (*sqs.DeleteQueueOutput, error) {
		return l.api.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	if sqserr.QueueMissing(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("broker: sqs: delete queue: %w", err)
	}
	return true, nil
}

// sqsServerTime is the time on SQS's clock when it answered a call: the
// Date header of the answer, which the SDK records in the call's result
// metadata (whole seconds, as are SQS's queue timestamps). It is fallback
// if the answer had no usable Date.
func sqsServerTime(meta middleware.Metadata, fallback time.Time) time.Time {
	if t, ok := awsmiddleware.GetServerTime(meta); ok && !t.IsZero() {
		return t
	}
	return fallback
}
