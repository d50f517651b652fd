// Decides IAM requests with @cloud-copilot/iam-simulate, a policy evaluator that implements
// AWS's evaluation logic (identity and resource policies, every condition operator) and
// checks each request against the Service Authorization Reference's actions, resource
// types and condition keys.
//
//   node evaluate.mjs <input.json>
//
// input: {account, roles: {function: [policy document]}, keyPolicy, requests: [{function,
// action, resource, context}]}; prints one {result, errors, ignored} per request, in order.
// KMS requests are also decided by the key's policy (keyPolicy), as KMS does.
import { readFileSync } from 'node:fs'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const decisions = []
for (const request of input.requests) {
  const policies = input.roles[request.function]
  if (!policies) {
    decisions.push({ result: 'NoRole', errors: { message: `no role for ${request.function}` } })
    continue
  }
  const simulation = {
    request: {
      principal: `arn:aws:iam::${input.account}:role/${request.function}`,
      action: request.action,
      resource: { resource: request.resource, accountId: input.account },
      contextVariables: request.context,
    },
    identityPolicies: policies.map((policy, n) => ({ name: `${request.function}-${n}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }
  if (request.action.startsWith('kms:')) {
    simulation.resourcePolicy = input.keyPolicy
  }
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    decisions.push({ result: 'Error', errors: response.errors })
  } else if (response.resultType === 'single') {
    decisions.push({ result: response.overallResult, ignored: response.result.ignoredContextKeys ?? [] })
  } else {
    decisions.push({ result: response.overallResult, ignored: [] })
  }
}
process.stdout.write(JSON.stringify(decisions))
