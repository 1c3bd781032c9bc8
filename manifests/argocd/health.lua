-- Argo CD health check for flyteagents.dev/AgentTask.
-- Install: resource.customizations.health.flyteagents.dev_AgentTask in argocd-cm
-- (manifests/argocd/argocd-cm-patch.yaml carries this script).
--
--   Healthy      the task Succeeded (Ready=True)
--   Degraded     it ended without success (Failed, TimedOut, Aborted) or is stuck
--                (Stalled=True: agent errors beyond the operator's budget, tampered status)
--   Progressing  anything else: waiting for the operator, running, being deleted, or a
--                spec change the operator has not observed yet
-- Same verdicts as kstatus (Current / Failed / InProgress), which Flux and cli-utils use.
local hs = {}
local meta = obj.metadata or {}
if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "AgentTask is being deleted (the operator cancels the agent's job first)"
  return hs
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the AgentTask"
  return hs
end
if status.observedGeneration ~= nil and meta.generation ~= nil and status.observedGeneration ~= meta.generation then
  hs.status = "Progressing"
  hs.message = "Spec change (generation " .. tostring(meta.generation) .. ") not yet observed by the operator"
  return hs
end
local phase = status.phase
local message = status.message or ""
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Stalled" and condition.status == "True" then
      hs.status = "Degraded"
      hs.message = phase .. ": " .. (condition.reason or "") .. ": " .. (condition.message or message)
      return hs
    end
    if condition.type == "Ready" and condition.status == "True" then
      hs.status = "Healthy"
      hs.message = phase .. (message ~= "" and (": " .. message) or "")
      return hs
    end
  end
end
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "TimedOut" or phase == "Aborted" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = phase .. (message ~= "" and (": " .. message) or "")
return hs
