// Command proxy-wasm is the Snowflake browser proxy: proxy/lib compiled to
// WebAssembly and run with the browser's own transports (RTCPeerConnection
// through pion/webrtc's js backend, WebSocket through coder/websocket,
// fetch for the broker).
//
// It exposes one object to the page's script:
//
//	snowflakeProxy.start(type, settingsJSON) // "" or an error message
//	snowflakeProxy.stop()                    // returns at once; state goes "stopping" then "off"
//	snowflakeProxy.status()                  // JSON, see status
//
// type is "badge" for the web page and "webext" for the extension; the
// settings schema is that of package settings.
package main

import (
	"log/slog"
	"os"
	"syscall/js"

	"github.com/snowflake-go/snowflake/common/scrub"
)

func main() {
	// Browser consoles are visible to page scripts and extensions, so
	// addresses are always scrubbed.
	logger := slog.New(scrub.NewHandler(newConsoleHandler(os.Stderr, slog.LevelInfo), false))
	c := newController(logger)

	api := js.Global().Get("Object").New()
	api.Set("start", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) != 2 || args[0].Type() != js.TypeString || args[1].Type() != js.TypeString {
			return "start(type, settingsJSON) takes two strings"
		}
		if err := c.start(args[0].String(), []byte(args[1].String())); err != nil {
			return err.Error()
		}
		return ""
	}))
	api.Set("stop", js.FuncOf(func(js.Value, []js.Value) any {
		c.stop()
		return nil
	}))
	api.Set("status", js.FuncOf(func(js.Value, []js.Value) any {
		return string(c.statusJSON())
	}))
	js.Global().Set("snowflakeProxy", api)
	// The functions above live as long as the page; main must not return.
	select {}
}
