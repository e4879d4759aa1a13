package broker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/snowflake-go/snowflake/common/messages"
)

// DefaultBridgeURL is the relay of the built-in default bridge.
const DefaultBridgeURL = "wss://snowflake.torproject.net/"

// Bridge is one entry of the bridge list: a bridge and the WebSocket URL of
// the Snowflake server in front of it, which proxies connect to.
type Bridge struct {
	DisplayName      string `json:"displayName"`
	WebSocketAddress string `json:"webSocketAddress"`
	Fingerprint      string `json:"fingerprint"`
}

// BridgeList maps canonical (upper-case hex) fingerprints to bridges.
type BridgeList map[string]Bridge

// DefaultBridgeList is the list used when no bridge list file is given.
func DefaultBridgeList() BridgeList {
	return BridgeList{messages.DefaultBridgeFingerprint: {
		DisplayName:      "default",
		WebSocketAddress: DefaultBridgeURL,
		Fingerprint:      messages.DefaultBridgeFingerprint,
	}}
}

// Lookup returns the bridge with the given hex fingerprint (any case).
func (l BridgeList) Lookup(fingerprint string) (Bridge, bool) {
	fp, err := messages.CanonicalFingerprint(fingerprint)
	if err != nil {
		return Bridge{}, false
	}
	b, ok := l[fp]
	return b, ok
}

// maxBridgeLine bounds one line of the bridge list file.
const maxBridgeLine = 64 * 1024

// ErrEmptyBridgeList is returned for a bridge list file without entries.
var ErrEmptyBridgeList = errors.New("broker: bridge list: no bridges")

// ParseBridgeList reads a bridge list: one JSON object per line with exactly
// the keys displayName, webSocketAddress and fingerprint. Unknown keys, bad
// fingerprints, non-WebSocket URLs and duplicate fingerprints invalidate the
// whole file. Blank lines are skipped.
func ParseBridgeList(r io.Reader) (BridgeList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxBridgeLine)
	list := BridgeList{}
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		b, err := parseBridgeLine(line)
		if err != nil {
			return nil, fmt.Errorf("broker: bridge list line %d: %w", n, err)
		}
		fp, _ := messages.CanonicalFingerprint(b.Fingerprint)
		if _, dup := list[fp]; dup {
			return nil, fmt.Errorf("broker: bridge list line %d: duplicate fingerprint %s", n, fp)
		}
		list[fp] = b
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("broker: bridge list: %w", err)
	}
	if len(list) == 0 {
		return nil, ErrEmptyBridgeList
	}
	return list, nil
}

func parseBridgeLine(line []byte) (Bridge, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var b Bridge
	if err := dec.Decode(&b); err != nil {
		return Bridge{}, err
	}
	if dec.More() {
		return Bridge{}, errors.New("trailing data after JSON object")
	}
	if _, err := messages.ParseFingerprint(b.Fingerprint); err != nil {
		return Bridge{}, err
	}
	u, err := url.Parse(b.WebSocketAddress)
	if err != nil {
		return Bridge{}, fmt.Errorf("webSocketAddress: %w", err)
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Hostname() == "" {
		return Bridge{}, fmt.Errorf("webSocketAddress %q is not a ws:// or wss:// URL", b.WebSocketAddress)
	}
	return b, nil
}
