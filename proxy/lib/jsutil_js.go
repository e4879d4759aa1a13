package proxy

// The helpers of the js build for calling JavaScript: promises, exceptions
// and bytes.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall/js"
)

// settle calls f, from the JavaScript event loop, once promise settles,
// with its value or its rejection as an error. f must not block. The
// callbacks are released when they run.
func settle(promise js.Value, f func(js.Value, error)) {
	var ok, fail js.Func
	release := func() {
		ok.Release()
		fail.Release()
	}
	ok = js.FuncOf(func(_ js.Value, args []js.Value) any {
		release()
		f(arg0(args), nil)
		return nil
	})
	fail = js.FuncOf(func(_ js.Value, args []js.Value) any {
		release()
		f(js.Undefined(), jsError(arg0(args)))
		return nil
	})
	promise.Call("then", ok, fail)
}

type promiseResult struct {
	v   js.Value
	err error
}

// await waits for a JavaScript promise. When ctx ends first it calls cancel
// (which must make the promise settle, as aborting a fetch does) and still
// waits for the promise to settle, so that what the request holds is gone
// when await returns.
func await(ctx context.Context, promise js.Value, cancel func()) (js.Value, error) {
	ch := make(chan promiseResult, 1)
	settle(promise, func(v js.Value, err error) { ch <- promiseResult{v, err} })
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		cancel()
		<-ch
		return js.Undefined(), ctx.Err()
	}
}

// jsBytes copies p into a new JavaScript Uint8Array.
func jsBytes(p []byte) js.Value {
	u8 := js.Global().Get("Uint8Array").New(len(p))
	js.CopyBytesToJS(u8, p)
	return u8
}

func arg0(args []js.Value) js.Value {
	if len(args) == 0 {
		return js.Undefined()
	}
	return args[0]
}

// jsError turns a rejection value into a Go error.
func jsError(v js.Value) error {
	if v.Type() == js.TypeObject {
		if m := v.Get("message"); m.Type() == js.TypeString {
			return errors.New(m.String())
		}
	}
	return fmt.Errorf("javascript error: %s", v.String())
}

// ignoreRejection is a promise handler that does nothing, so that a
// rejection nobody waits for is not reported as unhandled.
var ignoreRejection = sync.OnceValue(func() js.Func {
	return js.FuncOf(func(js.Value, []js.Value) any { return nil })
})

// jsNew calls new ctor(args...), turning a thrown exception (a malformed
// URL, a blocked port) into an error.
func jsNew(ctor js.Value, args ...any) (v js.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = jsPanicError(r)
		}
	}()
	return ctor.New(args...), nil
}

// jsCall calls v.name(args...), turning a thrown exception into an error.
func jsCall(v js.Value, name string, args ...any) (r js.Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = jsPanicError(p)
		}
	}()
	return v.Call(name, args...), nil
}

func jsPanicError(r any) error {
	if e, ok := r.(js.Error); ok {
		return jsError(e.Value)
	}
	return fmt.Errorf("javascript exception: %v", r)
}
