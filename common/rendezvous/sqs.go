package rendezvous

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/snowflake-go/snowflake/common/sqserr"
)

// SQS timing. The broker creates the response queue when it picks the
// request up and answers within its 5 s client timeout. Upstream clients
// try GetQueueUrl 5 times and then long-poll 20 s; here both waits are cut
// into short steps over a similar budget, because an SQS implementation
// whose long poll does not wake on arrival (local test servers) would
// otherwise hold the answer until the proxy's 20 s data-channel deadline
// has passed. Against real SQS the result is the same; only the number of
// (cheap) API calls differs.
const (
	sqsFirstWait      = 1 * time.Second
	sqsQueueURLTries  = 20
	sqsQueueURLPause  = 1 * time.Second
	sqsReceiveTries   = 25
	sqsReceiveWaitSec = 1
)

// SQSResponseQueuePrefix is followed by the ClientID in the name of the
// queue the broker answers on.
const SQSResponseQueuePrefix = "snowflake-client-"

// SQSCredentials are the static AWS credentials of the sqscreds argument.
type SQSCredentials struct {
	AccessKeyID string `json:"aws-access-key-id"`
	SecretKey   string `json:"aws-secret-key"`
}

// ParseSQSCredentials decodes sqscreds: standard base64 of
// {"aws-access-key-id":"…","aws-secret-key":"…"}.
func ParseSQSCredentials(s string) (SQSCredentials, error) {
	var c SQSCredentials
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("rendezvous: sqscreds: not base64: %w", err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("rendezvous: sqscreds: not JSON credentials: %w", err)
	}
	if c.AccessKeyID == "" || c.SecretKey == "" {
		return c, errors.New("rendezvous: sqscreds: aws-access-key-id and aws-secret-key are required")
	}
	return c, nil
}

// Encode returns the sqscreds form of c.
func (c SQSCredentials) Encode() string {
	b, _ := json.Marshal(c) // two strings cannot fail to marshal
	return base64.StdEncoding.EncodeToString(b)
}

// SQS is the rendezvous method over Amazon SQS: the poll request goes to the
// broker's queue, the response comes back on a per-request queue.
type SQS struct {
	queueURL string
	client   *sqs.Client
	pause    func(ctx context.Context, d time.Duration) error
}

// NewSQS returns the SQS method for queueURL
// ("https://sqs.<region>.amazonaws.com/<account>/<name>"). The API endpoint
// is the queue URL's scheme and host, so a local SQS-compatible server works
// unchanged. httpClient may be nil.
func NewSQS(queueURL string, creds SQSCredentials, httpClient *http.Client) (*SQS, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: sqsqueue: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("rendezvous: sqsqueue %q: need an http(s) URL with a host", queueURL)
	}
	if httpClient == nil {
		httpClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	cfg := aws.Config{
		Region:      sqsRegion(u.Hostname()),
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretKey, ""),
		HTTPClient:  httpClient,
	}
	endpoint := u.Scheme + "://" + u.Host
	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) })
	return &SQS{queueURL: queueURL, client: client, pause: sleepCtx}, nil
}

// sqsRegion reads the region out of "sqs.<region>.amazonaws.com"; other
// hosts (local test servers) get us-east-1.
func sqsRegion(host string) string {
	parts := strings.Split(host, ".")
	if len(parts) >= 4 && parts[0] == "sqs" && parts[len(parts)-2] == "amazonaws" {
		return parts[1]
	}
	return "us-east-1"
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sqsCallTimeout bounds each SQS API call beyond its long-poll wait, as
// ResponseHeaderTimeout bounds an HTTP or AMP exchange. The caller's context
// (a client session's) has no deadline, and neither a response body nor the
// HTTP/2 transport has a timeout of its own: an endpoint or middlebox that
// stalls mid-response would otherwise hold the rendezvous for good.
const sqsCallTimeout = ResponseHeaderTimeout

// callContext returns the context for one SQS call that may long-poll for
// wait.
func callContext(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, wait+sqsCallTimeout)
}

// Exchange implements [Method].
func (s *SQS) Exchange(ctx context.Context, pollRequest []byte) ([]byte, error) {
	id, err := s.send(ctx, pollRequest)
	if err != nil {
		return nil, err
	}
	if err := s.pause(ctx, sqsFirstWait); err != nil {
		return nil, fmt.Errorf("rendezvous: sqs: %w", err)
	}
	respQueue, err := s.responseQueue(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.receive(ctx, respQueue)
}

// send puts the poll request on the broker's queue under a new ClientID,
// which it returns.
func (s *SQS) send(ctx context.Context, pollRequest []byte) (string, error) {
	var idb [8]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	cctx, cancel := callContext(ctx, 0)
	defer cancel()
	_, err := s.client.SendMessage(cctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(s.queueURL),
		MessageBody: aws.String(string(pollRequest)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"ClientID": {DataType: aws.String("String"), StringValue: aws.String(id)},
		},
	})
	if err != nil {
		return "", fmt.Errorf("rendezvous: sqs: send: %w", err)
	}
	return id, nil
}

// responseQueue waits for the broker to create the response queue of
// ClientID id and returns its URL.
func (s *SQS) responseQueue(ctx context.Context, id string) (*string, error) {
	for i := 0; ; i++ {
		cctx, cancel := callContext(ctx, 0)
		out, err := s.client.GetQueueUrl(cctx, &sqs.GetQueueUrlInput{QueueName: aws.String(SQSResponseQueuePrefix + id)})
		cancel()
		if err == nil {
			return out.QueueUrl, nil
		}
		// A queue that does not exist (yet) is the one failure that
		// waiting for the broker can cure. Others (a call past its
		// deadline, refused credentials) would only repeat, each costing
		// up to a call deadline; the SDK has already retried the
		// transient ones (throttling, 5xx).
		if !sqserr.QueueMissing(err) {
			return nil, fmt.Errorf("rendezvous: sqs: response queue: %w", err)
		}
		if i+1 >= sqsQueueURLTries || ctx.Err() != nil {
			return nil, fmt.Errorf("rendezvous: sqs: the broker did not answer (its response queue never appeared): %w", err)
		}
		if err := s.pause(ctx, sqsQueueURLPause); err != nil {
			return nil, fmt.Errorf("rendezvous: sqs: %w", err)
		}
	}
}

// receive waits for the broker's response on respQueue.
func (s *SQS) receive(ctx context.Context, respQueue *string) ([]byte, error) {
	for i := 0; i < sqsReceiveTries; i++ {
		cctx, cancel := callContext(ctx, sqsReceiveWaitSec*time.Second)
		out, err := s.client.ReceiveMessage(cctx, &sqs.ReceiveMessageInput{
			QueueUrl:            respQueue,
			MaxNumberOfMessages: 1,
			WaitTimeSeconds:     sqsReceiveWaitSec,
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("rendezvous: sqs: receive: %w", err)
		}
		if len(out.Messages) > 0 && out.Messages[0].Body != nil {
			body := *out.Messages[0].Body
			if len(body) > MaxBodySize {
				return nil, ErrBodyTooLarge
			}
			return []byte(body), nil
		}
	}
	return nil, errors.New("rendezvous: sqs: no response from the broker")
}
