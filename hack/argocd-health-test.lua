-- Tests the Argo CD health check of BuildPolicy in docs/argocd.md.
--
--   lua5.4 hack/argocd-health-test.lua      (or lua5.1: Argo CD runs gopher-lua, a Lua 5.1)
--
-- Reads the script from the argocd-cm example in docs/argocd.md (the block
-- under resource.customizations.health.buildpolicy.dev_BuildPolicy), so the
-- page and the test cannot drift apart, and runs it against sample objects.
-- Exits 1 if any case fails.

local KEY = "resource.customizations.health.buildpolicy.dev_BuildPolicy: |"

local function script_dir()
  local source = debug.getinfo(1, "S").source
  return source:match("^@(.*)/[^/]*$") or "."
end

local function read_script(path)
  local file = assert(io.open(path, "r"))
  local lines, indent, started = {}, nil, false
  for line in file:lines() do
    if not started then
      started = line:find(KEY, 1, true) ~= nil
    elseif line:match("^%s*$") then
      lines[#lines + 1] = ""
    else
      local lead = line:match("^(%s*)")
      indent = indent or lead
      if #lead < #indent then
        break
      end
      lines[#lines + 1] = line:sub(#indent + 1)
    end
  end
  file:close()
  assert(started, "no '" .. KEY .. "' in " .. path)
  assert(#lines > 0, "empty health check in " .. path)
  return table.concat(lines, "\n")
end

-- A fresh environment per run, with only what Argo CD's Lua VM offers
-- that the script may use.
local function run(code, obj)
  local env = { obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring, string = string, table = table }
  local chunk
  if setfenv then -- Lua 5.1
    chunk = assert(loadstring(code, "=health"))
    setfenv(chunk, env)
  else
    chunk = assert(load(code, "=health", "t", env))
  end
  return chunk()
end

local function condition(type_, status, reason, message, generation)
  return {
    type = type_,
    status = status,
    reason = reason,
    message = message,
    observedGeneration = generation,
    lastTransitionTime = "2025-01-01T00:00:00Z",
  }
end

-- A policy at generation 2 whose status describes generation `observed`,
-- with a Ready condition (status, reason, message) and the other conditions.
local function policy(observed, ready_status, reason, message)
  local conditions = {
    condition("SCCReady", "True", "Reconciled", "SCC buildpolicy-modelcar-build is in place", observed),
  }
  if ready_status ~= nil then
    table.insert(conditions, 1, condition("Ready", ready_status, reason, message, observed))
  end
  return {
    apiVersion = "buildpolicy.dev/v1alpha1",
    kind = "BuildPolicy",
    metadata = { name = "modelcar-build", generation = 2 },
    spec = {
      namespace = "private-ai-demo",
      serviceAccountName = "model-build-sa",
      capabilities = { "SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT" },
      tasks = { "build-and-push-v2" },
    },
    status = {
      observedGeneration = observed,
      sccName = "buildpolicy-modelcar-build",
      conditions = conditions,
    },
  }
end

local cases = {}
local function case(name, obj, status, message)
  cases[#cases + 1] = { name = name, obj = obj, status = status, message = message }
end

local no_status = policy(2, "True", "Reconciled", "ok")
no_status.status = nil
case("no status yet", no_status, "Progressing", "Waiting for the operator to reconcile the policy")

case(
  "status of an older generation",
  policy(1, "True", "Reconciled", "SCC buildpolicy-modelcar-build is granted and pinned to build-and-push-v2"),
  "Progressing",
  "Waiting for the operator to act on generation 2"
)

local no_observed = policy(2, "True", "Reconciled", "ok")
no_observed.status.observedGeneration = nil
case("status without observedGeneration", no_observed, "Progressing", "Waiting for the operator to act on generation 2")

case("no Ready condition", policy(2, nil), "Progressing", "Waiting for the Ready condition")

local stale_ready = policy(2, "True", "Reconciled", "ok")
stale_ready.status.conditions[1].observedGeneration = 1
case("Ready of an older generation", stale_ready, "Progressing", "Waiting for the Ready condition of generation 2")

case(
  "Ready",
  policy(2, "True", "Reconciled", "SCC buildpolicy-modelcar-build is granted and pinned to build-and-push-v2"),
  "Healthy",
  "SCC buildpolicy-modelcar-build is granted and pinned to build-and-push-v2"
)

for _, reason in ipairs({
  "CapabilityNotAllowed",
  "NamespaceNotAllowed",
  "InvalidSpec",
  "SCCConflict",
  "TaskConflict",
  "ApplyFailed",
  "UnsupportedByCluster",
  "SomeFutureReason",
}) do
  case(
    "Ready=False " .. reason,
    policy(2, "False", reason, "what is wrong and how to fix it"),
    "Degraded",
    reason .. ": what is wrong and how to fix it"
  )
end

for _, reason in ipairs({ "NamespaceNotFound", "ServiceAccountNotFound", "TaskNotFound", "Waiting", "Deleting" }) do
  case(
    "Ready=False " .. reason,
    policy(2, "False", reason, "waiting for something to appear"),
    "Progressing",
    reason .. ": waiting for something to appear"
  )
end

case("Ready=Unknown", policy(2, "Unknown", "Waiting", "starting"), "Progressing", "Ready is Unknown: starting")

local no_message = policy(2, "False", "CapabilityNotAllowed", nil)
case("Ready=False without a message", no_message, "Degraded", "CapabilityNotAllowed: ")

local no_generation = policy(2, "True", "Reconciled", "ok")
no_generation.metadata.generation = nil
case("object without metadata.generation", no_generation, "Healthy", "ok")

-- The real thing: the status the operator writes for a refused policy.
local refused = policy(2, "False", "CapabilityNotAllowed",
  "spec.capabilities asks for SYS_PTRACE beyond the operator's ceiling: remove it or ask a cluster admin to allow it (allowed: SETFCAP, SETGID, SETUID, SYS_ADMIN, SYS_CHROOT) (nothing is granted while the policy is refused)")
refused.status.sccName = nil
case("refused by the ceiling", refused, "Degraded",
  "CapabilityNotAllowed: spec.capabilities asks for SYS_PTRACE beyond the operator's ceiling: remove it or ask a cluster admin to allow it (allowed: SETFCAP, SETGID, SETUID, SYS_ADMIN, SYS_CHROOT) (nothing is granted while the policy is refused)")

local path = (arg and arg[1]) or (script_dir() .. "/../docs/argocd.md")
local code = read_script(path)
local failed = 0
for _, c in ipairs(cases) do
  local ok, hs = pcall(run, code, c.obj)
  if not ok then
    failed = failed + 1
    print("FAIL " .. c.name .. ": the script raised " .. tostring(hs))
  elseif hs.status ~= c.status or hs.message ~= c.message then
    failed = failed + 1
    print(string.format("FAIL %s: got %s %q, want %s %q", c.name, tostring(hs.status), tostring(hs.message), c.status, c.message))
  else
    print(string.format("ok   %-40s %s", c.name, hs.status))
  end
end
print(string.format("%d cases, %d failed (%s, %s)", #cases, failed, _VERSION, path))
os.exit(failed == 0 and 0 or 1)
