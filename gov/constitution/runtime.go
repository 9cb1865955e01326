package constitution

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dop251/goja"

	cococrypto "github.com/cocoledger/coco/crypto"
)

// program is a compiled module: the script goja runs plus its exports.
type program struct {
	name  string
	prg   *goja.Program
	names map[string]bool
}

// compileModule transforms and compiles src, requiring each of required to
// be exported. Module code is strict in ES, so it compiles as strict.
func compileModule(name, src string, maxBytes int, required ...string) (*program, error) {
	if len(src) > maxBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, name, len(src), maxBytes)
	}
	ex, err := transformModule(name, src)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, r := range required {
		if !ex.names[r] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s must export %s", ErrMissingExport, name, strings.Join(missing, ", "))
	}
	prg, err := goja.CompileAST(ex.ast, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	return &program{name: name, prg: prg, names: ex.names}, nil
}

// timeoutSignal and cancelSignal are what a call is interrupted with, so
// the error can say which budget ran out.
type timeoutSignal struct{}
type cancelSignal struct{ err error }

type outcome[T any] struct {
	val T
	err error
}

// runCall runs p's top level in a fresh goja.Runtime (nothing survives from
// one call to the next: globals, prototypes, closures), then body, under
// l.Timeout and ctx. It runs on its own goroutine so that a script stuck in
// an uninterruptible built-in cannot hold the caller past l.HardTimeout().
//
// load returns the program to run; it is called on the call's goroutine, so
// compiling there (as EvalBallot does) is covered by the time budget too.
func runCall[T any](ctx context.Context, load func() (*program, error), l Limits, view *kvView, what string,
	body func(vm *goja.Runtime, p *program) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("constitution: %s: %w", what, err)
	}
	vm := goja.New()
	vm.SetMaxCallStackSize(l.MaxCallDepth)
	if err := installHost(vm, view, l); err != nil {
		return zero, fmt.Errorf("%w: %s: host setup: %w", ErrInternal, what, err)
	}

	done := make(chan outcome[T], 1)
	go func() {
		var o outcome[T]
		defer func() {
			if x := recover(); x != nil {
				o = outcome[T]{err: classifyPanic(x, what, l)}
			}
			done <- o
		}()
		p, err := load()
		if err != nil {
			o.err = err
			return
		}
		if _, err := vm.RunProgram(p.prg); err != nil {
			o.err = classify(err, what, l)
			return
		}
		o.val, o.err = body(vm, p)
		if o.err != nil {
			o.err = classify(o.err, what, l)
		}
	}()

	interrupt := time.AfterFunc(l.Timeout, func() { vm.Interrupt(timeoutSignal{}) })
	defer interrupt.Stop()
	hard := time.NewTimer(l.HardTimeout())
	defer hard.Stop()
	select {
	case o := <-done:
		return o.val, o.err
	case <-hard.C:
		view.abandon()
		return zero, fmt.Errorf("%w: %s did not stop within %v (stuck in a built-in; abandoned)", ErrTimeout, what, l.HardTimeout())
	case <-ctx.Done():
		vm.Interrupt(cancelSignal{ctx.Err()})
		view.abandon()
		return zero, fmt.Errorf("constitution: %s: %w", what, ctx.Err())
	}
}

// classify turns what goja returned into one of the package's errors.
func classify(err error, what string, l Limits) error {
	var ie *goja.InterruptedError
	var so *goja.StackOverflowError
	switch {
	case errors.As(err, &ie):
		if c, ok := ie.Value().(cancelSignal); ok {
			return fmt.Errorf("constitution: %s: %w", what, c.err)
		}
		return fmt.Errorf("%w: %s ran past %v", ErrTimeout, what, l.Timeout)
	case errors.As(err, &so):
		return fmt.Errorf("%w: %s: stack overflow (more than %d nested calls)", ErrScript, what, l.MaxCallDepth)
	case errors.Is(err, ErrBadResult), errors.Is(err, ErrMissingExport), errors.Is(err, ErrTooLarge), errors.Is(err, ErrSyntax):
		return err
	}
	// A *goja.Exception (the script threw) or a host error it let escape;
	// its message carries the script's stack with file:line:column.
	return fmt.Errorf("%w: %s: %w", ErrScript, what, err)
}

// classifyPanic handles a panic on the call's goroutine. goja panics with
// its exception types when Go code (ours) touches a JS value whose getter
// throws or is interrupted; anything else is an engine bug, reported rather
// than crashing the node.
func classifyPanic(x any, what string, l Limits) error {
	switch e := x.(type) {
	case *goja.Exception, *goja.InterruptedError, *goja.StackOverflowError:
		return classify(e.(error), what, l)
	}
	return fmt.Errorf("%w: %s: panic: %v", ErrInternal, what, x)
}

// exportedFunc returns the exported function name.
func exportedFunc(vm *goja.Runtime, p *program, name string) (goja.Callable, error) {
	if !p.names[name] {
		return nil, fmt.Errorf("%w: %s does not export %s", ErrMissingExport, p.name, name)
	}
	f, ok := goja.AssertFunction(vm.Get(name))
	if !ok {
		return nil, fmt.Errorf("%w: %s exports %s, but it is not a function", ErrMissingExport, p.name, name)
	}
	return f, nil
}

// preludeSrc completes the host API in JS and caps the string built-ins
// that allocate their whole result in one uninterruptible step.
//
// It also closes every way for a script to reach goja's parser at run time
// (eval and the Function constructors), since source compiled there would
// bypass the nesting bounds of findExports, and bounds JSON.parse nesting:
// goja recurses per level in both and a stack overflow kills the process.
const preludeSrc = `(function (ccf, maxString, jsonDepthOK, maxJSONDepth) {
	"use strict";
	const refuse = (what) => function () {
		throw new EvalError(what + " is disabled: code cannot be compiled at run time");
	};
	Object.defineProperty(globalThis, "eval", { value: refuse("eval"), writable: false, configurable: false });
	const F = refuse("Function");
	for (const proto of [
		Function.prototype,
		Object.getPrototypeOf(function* () {}),
		Object.getPrototypeOf(async function () {}),
	]) {
		Object.defineProperty(proto, "constructor", { value: F, writable: false, configurable: false });
	}
	Object.defineProperty(globalThis, "Function", { value: F, writable: false, configurable: false });
	// goja allocates a whole ArrayBuffer or typed array in one
	// uninterruptible step, and an allocation the Go runtime cannot satisfy
	// is a fatal error, so a script could kill the node with
	// new ArrayBuffer(1e12). Typed arrays, DataView and SharedArrayBuffer
	// are removed (the host API needs only ArrayBuffer, as an opaque
	// buffer), and ArrayBuffer is capped at maxString bytes, including when
	// reached as ccf.strToBuf("").constructor.
	for (const name of ["SharedArrayBuffer", "DataView", "Int8Array", "Uint8Array",
		"Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
		"Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"]) {
		delete globalThis[name];
	}
	const AB = ArrayBuffer;
	const CappedArrayBuffer = function ArrayBuffer(length) {
		if (new.target === undefined) {
			throw new TypeError("Constructor ArrayBuffer requires 'new'");
		}
		const n = length === undefined ? 0 : Number(length);
		if (n > maxString) {
			throw new RangeError("ArrayBuffer: length " + n + " is above the limit of " + maxString + " bytes");
		}
		return Reflect.construct(AB, [n], new.target);
	};
	Object.defineProperty(CappedArrayBuffer, "prototype", { value: AB.prototype, writable: false, configurable: false });
	Object.defineProperty(CappedArrayBuffer, "isView", { value: AB.isView, writable: true, configurable: true });
	Object.defineProperty(AB.prototype, "constructor", { value: CappedArrayBuffer, writable: false, configurable: false });
	Object.defineProperty(globalThis, "ArrayBuffer", { value: CappedArrayBuffer, writable: false, configurable: false });
	const parse = JSON.parse;
	Object.defineProperty(JSON, "parse", {
		value: function (text, reviver) {
			const s = String(text);
			if (!jsonDepthOK(s)) {
				throw new SyntaxError("JSON.parse: nested more than " + maxJSONDepth + " levels deep");
			}
			return parse(s, reviver);
		},
		writable: true, configurable: true,
	});
	const S = String.prototype;
	const wrap = (name, size) => {
		const orig = S[name];
		Object.defineProperty(S, name, {
			value: function (n, ...rest) {
				if (size(String(this).length, Number(n)) > maxString) {
					throw new RangeError("String.prototype." + name + ": result longer than " + maxString);
				}
				return orig.call(this, n, ...rest);
			},
			writable: true, configurable: true,
		});
	};
	wrap("repeat", (len, n) => len * n);
	wrap("padStart", (len, n) => n);
	wrap("padEnd", (len, n) => n);
	ccf.jsonCompatibleToBuf = (v) => ccf.strToBuf(JSON.stringify(v));
	ccf.bufToJsonCompatible = (b) => JSON.parse(ccf.bufToStr(b));
})`

// prelude is compiled once; a goja.Program is immutable and may run in many
// runtimes at once.
var prelude = goja.MustCompile("prelude.js", preludeSrc, true)

// installHost defines the globals a constitution sees: ccf (kv, buffers,
// pemToId, crypto checks) and a console whose output is dropped (CCF code
// logs; a consensus node has no place to show it per call).
func installHost(vm *goja.Runtime, view *kvView, l Limits) error {
	ccf := vm.NewObject()
	set := func(o *goja.Object, name string, v any) {
		if err := o.Set(name, v); err != nil {
			panic(err) // only on a frozen object; these are fresh
		}
	}
	// Error as it is before any script runs: scripts may replace the global.
	errorCtor := vm.Get("Error")
	set(ccf, "kv", vm.NewDynamicObject(&kvObject{vm: vm, view: view, errorCtor: errorCtor, handles: map[string]*goja.Object{}}))
	set(ccf, "strToBuf", func(s string) goja.ArrayBuffer { return vm.NewArrayBuffer([]byte(s)) })
	set(ccf, "bufToStr", func(b goja.Value) string { return toStr(vm, b, "bufToStr argument") })
	set(ccf, "pemToId", func(s string) string {
		cert, err := cococrypto.ParseCertPEM([]byte(s))
		if err != nil {
			panic(vm.NewTypeError("pemToId: %v", err))
		}
		return cococrypto.CertID(cert)
	})
	set(ccf, "checkConstitution", func(src string) string {
		if _, err := compileModule("constitution.js", src, MaxConstitutionBytes, constitutionExports...); err != nil {
			return err.Error()
		}
		return ""
	})
	cr := vm.NewObject()
	set(cr, "isValidX509CertBundle", func(s string) bool { return validCertBundle(s) })
	set(cr, "isValidPublicKeyPem", func(s string) bool {
		_, err := cococrypto.ParsePublicKeyPEM([]byte(s))
		return err == nil
	})
	set(ccf, "crypto", cr)
	if err := vm.Set("ccf", ccf); err != nil {
		return err
	}
	console := vm.NewObject()
	for _, n := range []string{"log", "info", "warn", "error", "debug"} {
		set(console, n, func(goja.FunctionCall) goja.Value { return goja.Undefined() })
	}
	if err := vm.Set("console", console); err != nil {
		return err
	}
	v, err := vm.RunProgram(prelude)
	if err != nil {
		return err
	}
	f, ok := goja.AssertFunction(v)
	if !ok {
		return errors.New("prelude is not a function")
	}
	_, err = f(goja.Undefined(), ccf, vm.ToValue(l.MaxStringBytes), vm.ToValue(jsonDepthOK), vm.ToValue(maxJSONDepth))
	return err
}

// maxJSONDepth bounds the nesting of what JSON.parse accepts.
const maxJSONDepth = 1024

// jsonDepthOK reports whether s nests [ and { at most maxJSONDepth deep,
// brackets inside strings aside. It does not validate s: JSON.parse does.
func jsonDepthOK(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > maxJSONDepth {
				return false
			}
		case ']', '}':
			depth--
		}
	}
	return true
}

// validCertBundle reports whether s is one or more PEM certificates and
// nothing else.
func validCertBundle(s string) bool {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return false
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return false
		}
		n++
	}
	return n > 0 && strings.TrimSpace(string(rest)) == ""
}

// toStr accepts a string or an ArrayBuffer: CCF's kv takes ArrayBuffers,
// ours takes strings, and accepting both lets CCF-style code
// (ccf.strToBuf(...)) run unchanged.
func toStr(vm *goja.Runtime, v goja.Value, what string) string {
	if v != nil {
		switch x := v.Export().(type) {
		case string:
			return x
		case goja.ArrayBuffer:
			return string(x.Bytes())
		}
	}
	panic(vm.NewTypeError("%s must be a string or an ArrayBuffer", what))
}

// kvObject is ccf.kv: any property name is a map handle, as in CCF.
type kvObject struct {
	vm        *goja.Runtime
	view      *kvView
	errorCtor goja.Value // the intrinsic Error constructor
	handles   map[string]*goja.Object
}

// newError returns a plain JS Error with msg. Go errors are not handed to
// scripts as such (vm.NewGoError would expose the Go value and its methods).
func (k *kvObject) newError(msg string) *goja.Object {
	if o, err := k.vm.New(k.errorCtor, k.vm.ToValue(msg)); err == nil {
		return o
	}
	return k.vm.NewTypeError("%s", msg)
}

var _ goja.DynamicObject = (*kvObject)(nil)

func (k *kvObject) Get(name string) goja.Value {
	if h, ok := k.handles[name]; ok {
		return h
	}
	h := k.handle(name)
	k.handles[name] = h
	return h
}

func (k *kvObject) Set(string, goja.Value) bool { return false }
func (k *kvObject) Has(name string) bool        { return strings.HasPrefix(name, publicPrefix) }
func (k *kvObject) Delete(string) bool          { return false }
func (k *kvObject) Keys() []string              { return nil }

// handle builds the map object for mapName: get/has/set/delete/forEach,
// CCF's KvMap with string keys and values. get returns a string (or
// undefined); set and delete take strings or ArrayBuffers.
func (k *kvObject) handle(mapName string) *goja.Object {
	vm, view := k.vm, k.view
	throw := func(op string, err error) {
		panic(k.newError(fmt.Sprintf("ccf.kv[%q].%s: %v", mapName, op, err)))
	}
	h := vm.NewObject()
	must := func(name string, fn any) {
		if err := h.Set(name, fn); err != nil {
			panic(err)
		}
	}
	must("get", func(key goja.Value) goja.Value {
		v, ok, err := view.get(mapName, toStr(vm, key, "key"))
		if err != nil {
			throw("get", err)
		}
		if !ok {
			return goja.Undefined()
		}
		return vm.ToValue(v)
	})
	must("has", func(key goja.Value) bool {
		_, ok, err := view.get(mapName, toStr(vm, key, "key"))
		if err != nil {
			throw("has", err)
		}
		return ok
	})
	must("set", func(key, value goja.Value) goja.Value {
		v := toStr(vm, value, "value")
		if err := view.put(mapName, toStr(vm, key, "key"), &v); err != nil {
			throw("set", err)
		}
		return h
	})
	must("delete", func(key goja.Value) bool {
		kstr := toStr(vm, key, "key")
		_, existed, err := view.get(mapName, kstr)
		if err == nil {
			err = view.put(mapName, kstr, nil)
		}
		if err != nil {
			throw("delete", err)
		}
		return existed
	})
	must("forEach", func(cb goja.Value) {
		f, ok := goja.AssertFunction(cb)
		if !ok {
			panic(vm.NewTypeError("ccf.kv[%q].forEach: callback is not a function", mapName))
		}
		entries, err := view.entries(mapName)
		if err != nil {
			throw("forEach", err)
		}
		for _, e := range entries {
			if _, err := f(goja.Undefined(), vm.ToValue(e[1]), vm.ToValue(e[0]), h); err != nil {
				// Rethrow as is: a JS exception stays catchable, an
				// interrupt stays uncatchable.
				panic(err)
			}
		}
	})
	return h
}
