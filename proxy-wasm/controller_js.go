package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/snowflake-go/snowflake/proxy-wasm/settings"
	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

// state of the controller: off → on → stopping → off.
type state string

const (
	stateOff      state = "off"
	stateOn       state = "on"
	stateStopping state = "stopping"
)

// controller owns at most one running proxy and what the page shows about
// it. Its methods are called from JavaScript event handlers, so none of
// them waits for anything that needs the browser's event loop.
type controller struct {
	log *slog.Logger

	mu      sync.Mutex // guards the fields below
	state   state
	typ     string
	p       *proxy.Proxy
	cancel  context.CancelFunc
	lastErr string
}

func newController(log *slog.Logger) *controller {
	return &controller{log: log, state: stateOff}
}

// start parses the settings and runs a proxy of the given type.
func (c *controller) start(proxyType string, raw []byte) error {
	s, err := settings.Parse(raw)
	if err != nil {
		return err
	}
	cfg, err := s.Config(proxyType, c.log)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateOn:
		return errors.New("already running")
	case stateStopping:
		return errors.New("still stopping; try again in a moment")
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.state, c.typ, c.p, c.cancel, c.lastErr = stateOn, proxyType, p, cancel, ""
	go func() {
		err := p.Run(ctx)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			c.lastErr = err.Error()
			c.log.Error("proxy stopped", "err", err)
		}
		cancel()
		c.state = stateOff
	}()
	return nil
}

// stop asks the running proxy to end. Run closes every client connection
// and aborts outstanding polls before it returns, after which the state is
// off again.
func (c *controller) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOn {
		c.state = stateStopping
		c.cancel()
	}
}

// status is what status() returns to the page.
type status struct {
	State       state  `json:"state"`
	Type        string `json:"type,omitempty"`
	NAT         string `json:"nat"`
	Active      int64  `json:"active"`
	Connections int64  `json:"connections"`
	Failed      int64  `json:"failed"`
	Polls       int64  `json:"polls"`
	PollErrors  int64  `json:"pollErrors"`
	BytesUp     int64  `json:"bytesUp"`
	BytesDown   int64  `json:"bytesDown"`
	Error       string `json:"error,omitempty"`
}

func (c *controller) statusJSON() []byte {
	c.mu.Lock()
	st := status{State: c.state, Type: c.typ, NAT: "unknown", Error: c.lastErr}
	p := c.p
	c.mu.Unlock()
	if p != nil {
		s := p.Stats()
		st.NAT = p.NAT().String()
		st.Active = s.Active.Load()
		st.Connections = s.Connections.Load()
		st.Failed = s.Failed.Load()
		st.Polls = s.Polls.Load()
		st.PollErrors = s.PollErrors.Load()
		st.BytesUp = s.BytesUp.Load()
		st.BytesDown = s.BytesDown.Load()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return []byte(fmt.Sprintf(`{"state":"off","error":%q}`, err.Error()))
	}
	return b
}
