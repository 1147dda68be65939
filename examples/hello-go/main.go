// hello-go: the Go version of the example every weft language implements
// the same way (examples/hello.test.yaml).
//
// Plugin configuration (JSON): {"header": "x-hello", "value": "world"}.
// Every request is logged at INFO ("hello: METHOD PATH") and counted
// (hello_requests_total); every response gets the configured header;
// GET /hello-local is answered by the filter itself.
package main

import (
	"encoding/json"
	"errors"

	"weft.dev/sdk/go/proxywasm"
)

// With -buildmode=c-shared, main is never run: the host calls
// _initialize, which runs init functions, and then the callbacks.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(contextID uint32) proxywasm.PluginContext {
		return &helloPlugin{}
	})
}

// config is the validated plugin configuration.
type config struct {
	header string
	value  string
}

// The counter is defined once per VM, at the first successful configure.
var (
	requests        proxywasm.MetricCounter
	requestsDefined bool
)

type helloPlugin struct {
	proxywasm.DefaultPluginContext
	config config
}

func (p *helloPlugin) OnPluginStart(int) bool {
	data, err := proxywasm.GetPluginConfiguration()
	if err == nil {
		p.config, err = parseConfig(data)
	}
	if err != nil {
		proxywasm.LogErrorf(`hello: invalid configuration: %v; expected {"header": "...", "value": "..."}`, err)
		return false
	}
	if !requestsDefined {
		if requests, err = proxywasm.DefineCounterMetric("hello_requests_total"); err != nil {
			proxywasm.LogErrorf("hello: cannot define hello_requests_total: %v", err)
			return false
		}
		requestsDefined = true
	}
	return true
}

// parseConfig accepts a JSON object with a non-empty string "header" and
// a string "value" (other keys ignored).
func parseConfig(data []byte) (config, error) {
	var raw struct {
		Header *string `json:"header"`
		Value  *string `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return config{}, err
	}
	if raw.Header == nil {
		return config{}, errors.New(`"header" is missing`)
	}
	if *raw.Header == "" {
		return config{}, errors.New(`"header" is empty`)
	}
	if raw.Value == nil {
		return config{}, errors.New(`"value" is missing`)
	}
	return config{header: *raw.Header, value: *raw.Value}, nil
}

func (p *helloPlugin) NewHttpContext(uint32) proxywasm.HttpContext {
	return &hello{config: p.config}
}

type hello struct {
	proxywasm.DefaultHttpContext
	config config
}

func (h *hello) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	proxywasm.LogInfof("hello: %s %s", method, path)
	if err := requests.Increment(1); err != nil {
		proxywasm.LogWarnf("hello: cannot count the request: %v", err)
	}
	if method == "GET" && path == "/hello-local" {
		err := proxywasm.SendHttpResponse(200, [][2]string{
			{"content-type", "text/plain"},
			{h.config.header, h.config.value},
		}, []byte("hello\n"))
		if err != nil {
			proxywasm.LogErrorf("hello: cannot answer locally: %v", err)
			return proxywasm.ActionContinue
		}
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

func (h *hello) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	if err := proxywasm.AddHttpResponseHeader(h.config.header, h.config.value); err != nil {
		proxywasm.LogWarnf("hello: cannot add %s: %v", h.config.header, err)
	}
	return proxywasm.ActionContinue
}
