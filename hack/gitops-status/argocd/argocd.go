// Package argocd runs an Argo CD health check the way Argo CD runs one
// from argocd-cm, with the Lua interpreter and JSON bridge Argo CD uses
// (github.com/yuin/gopher-lua v1.1.2 and layeh.com/gopher-json
// v0.0.0-20190114024228-97fed8db8427, the versions in argo-cd v3.5.1's
// go.mod).
//
// Argo CD itself is not imported (its module drags in most of Kubernetes);
// this package reproduces, in its own code, what these functions of argo-cd
// v3.5.1 do with a health check:
//
//   - util/settings/settings.go, appendResourceOverridesFromSplitKeys and
//     convertToOverrideKey: a key resource.customizations.health.<group>_<kind>
//     of argocd-cm is the override "<group>/<kind>", its value the script;
//     resource.customizations.useOpenLibs.<group>_<kind> (absent: false)
//     says whether the script gets Lua's standard libraries.
//   - util/lua/lua.go, VM.GetHealthScript and GetConfigMapKey: the override
//     whose key is the object's "<group>/<kind>".
//   - util/lua/lua.go, VM.runLuaWithResourceActionParameters: a new
//     lua.LState with SkipOpenLibs = !useOpenLibs; then the package, base
//     and table libraries and util/lua/oslib_safe.go's OpenSafeOs, each
//     called with its library name; the safe os (time and date only)
//     preloaded as the module "os"; no "json" module (one was preloaded in
//     December 2020 and reverted); a 1 s timeout through the state's
//     context; the globals actionParams (an empty table for a health check)
//     and obj; DoString; a runtime error loses its Lua stack trace.
//   - util/lua/lua.go, decodeValue: how the object's Go map becomes a Lua
//     table (numbers of any Go integer or float type become Lua numbers, a
//     json.Number a string, anything else nil).
//   - util/lua/lua.go, VM.ExecuteHealthLua and isValidHealthStatusCode: a
//     returned table is encoded with gopher-json and decoded into a
//     HealthStatus; one that does not decode into it (an empty table
//     encodes as []) gives an empty HealthStatus; a status that is not one
//     of the six codes gives Unknown "Lua returned an invalid health
//     status"; nil gives an empty HealthStatus; anything else is an error.
//   - gitops-engine/pkg/health/health.go, GetResourceHealth: an object
//     with metadata.deletionTimestamp and no Argo CD hook finalizer is
//     Progressing "Pending deletion" before any health check runs; an
//     error of the check is Unknown with the error as message.
//
// One consequence worth knowing: OpenSafeOs registers time and date with
// RegisterModule under lua.TabLibName ("table"), which is already loaded,
// so it adds nothing; with useOpenLibs false the global os is nil and
// os.time() fails, while require("os").time() works. The string and math
// libraries are not there either: no string.format, no ("x"):upper().
//
// Left out on purpose: the wildcard keys and built-in scripts of
// GetHealthScript (argocd-cm names buildpolicy.dev/BuildPolicy exactly,
// and built-in scripts always run with useOpenLibs true); the compiled-script
// cache of Argo CD after v3.5.1 (LoadString and PCall instead of DoString,
// the same execution).
package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
)

// HealthStatusCode and HealthStatus have the shape of gitops-engine's
// pkg/health types (the JSON a health_test.yaml compares).
type HealthStatusCode string

const (
	HealthStatusUnknown     HealthStatusCode = "Unknown"
	HealthStatusProgressing HealthStatusCode = "Progressing"
	HealthStatusHealthy     HealthStatusCode = "Healthy"
	HealthStatusSuspended   HealthStatusCode = "Suspended"
	HealthStatusDegraded    HealthStatusCode = "Degraded"
	HealthStatusMissing     HealthStatusCode = "Missing"
)

// Valid are the codes Argo CD accepts from a script.
var Valid = []HealthStatusCode{
	HealthStatusUnknown, HealthStatusProgressing, HealthStatusHealthy,
	HealthStatusSuspended, HealthStatusDegraded, HealthStatusMissing,
}

type HealthStatus struct {
	Status  HealthStatusCode `json:"status,omitempty"`
	Message string           `json:"message,omitempty"`
}

// InvalidHealthStatus is Argo CD's message, with status Unknown, for a
// script that returns a status outside Valid.
const InvalidHealthStatus = "Lua returned an invalid health status"

// Override is the part of Argo CD's ResourceOverride a health check uses.
type Override struct {
	HealthLua   string
	UseOpenLibs bool
}

// Overrides reads the split keys resource.customizations.<type>.<group_kind>
// of argocd-cm's data (health and useOpenLibs; the other types Argo CD
// knows are accepted and ignored), keyed "<group>/<kind>".
func Overrides(data map[string]string) (map[string]Override, error) {
	known := []string{"actions", "ignoreDifferences", "ignoreResourceUpdates", "knownTypeFields"}
	overrides := map[string]Override{}
	for key, value := range data {
		if !strings.HasPrefix(key, "resource.customizations") {
			continue
		}
		parts := strings.SplitN(key, ".", 4)
		if len(parts) < 4 {
			continue
		}
		groupKind := strings.Split(parts[3], "_")
		var name string
		switch {
		case len(groupKind) == 2:
			name = groupKind[0] + "/" + groupKind[1]
		case len(groupKind) == 1 && parts[3] != "":
			name = parts[3]
		default:
			return nil, fmt.Errorf("%s: want resource.customizations.<type>.<group>_<kind>", key)
		}
		if name == "all" {
			name = "*/*"
		}
		o := overrides[name]
		switch parts[2] {
		case "health":
			o.HealthLua = value
		case "useOpenLibs":
			b, err := strconv.ParseBool(value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			o.UseOpenLibs = b
		default:
			if !slices.Contains(known, parts[2]) {
				return nil, fmt.Errorf("resource customization type %s not supported", parts[2])
			}
		}
		overrides[name] = o
	}
	return overrides, nil
}

// ConfigMapKey is the override key of an object: "<group>/<kind>", or the
// kind alone in the core group.
func ConfigMapKey(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Group + "/" + gvk.Kind
}

// ResourceHealth is what Argo CD's application controller reports for one
// live object with these overrides. nil: no check applies (Argo CD's
// built-in checks know nothing of a BuildPolicy).
func ResourceHealth(obj *unstructured.Unstructured, overrides map[string]Override) (*HealthStatus, error) {
	if obj.GetDeletionTimestamp() != nil && !slices.Contains(obj.GetFinalizers(), "argocd.argoproj.io/hook-finalizer") {
		return &HealthStatus{Status: HealthStatusProgressing, Message: "Pending deletion"}, nil
	}
	o, ok := overrides[ConfigMapKey(obj)]
	if !ok || o.HealthLua == "" {
		return nil, nil
	}
	hs, err := ExecuteHealthLua(obj, o.HealthLua, o.UseOpenLibs)
	if err != nil {
		return &HealthStatus{Status: HealthStatusUnknown, Message: err.Error()}, err
	}
	return hs, nil
}

// ExecuteHealthLua runs a health check on obj as Argo CD does, and returns
// what Argo CD makes of its result (see the package comment).
func ExecuteHealthLua(obj *unstructured.Unstructured, script string, useOpenLibs bool) (*HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening %q: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj.Object))

	if err := l.DoString(script); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return nil, err
	}

	switch ret := l.Get(-1); ret.Type() {
	case lua.LTNil:
		return &HealthStatus{}, nil
	case lua.LTTable:
		encoded, err := luajson.Encode(ret)
		if err != nil {
			return nil, err
		}
		hs := &HealthStatus{}
		if err := json.Unmarshal(encoded, hs); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return &HealthStatus{}, nil
			}
			return nil, err
		}
		if !slices.Contains(Valid, hs.Status) {
			return &HealthStatus{Status: HealthStatusUnknown, Message: InvalidHealthStatus}, nil
		}
		return hs, nil
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
}

// safeOs is the os library of util/lua/oslib_safe.go: time and date, which
// Argo CD copied from gopher-lua; these are gopher-lua's own.
var safeOs = func() map[string]lua.LGFunction {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	l.Push(l.NewFunction(lua.OpenOs))
	l.Push(lua.LString(lua.OsLibName))
	l.Call(1, 1)
	os := l.Get(-1).(*lua.LTable)
	funcs := map[string]lua.LGFunction{}
	for _, name := range []string{"time", "date"} {
		funcs[name] = os.RawGetString(name).(*lua.LFunction).GFunction
	}
	return funcs
}()

// openSafeOs registers safeOs as OpenSafeOs does: under the name of the
// table library, which is loaded by then, so that nothing changes.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOs))
	return 1
}

// toLua converts a decoded JSON object to Lua values as decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	default:
		return lua.LNil
	}
}
