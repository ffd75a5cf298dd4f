/**
 * A website talking to order-api through the types openapi-typescript generates from its OpenAPI document,
 * with openapi-fetch: create an order without signing in, read a validation problem (422) and a missing order
 * (404) as typed problems with their fields, then cancel the order with If-Match.
 *
 *     npm run generate && npm run build && node dist/src/order-flow.js http://127.0.0.1:8001
 *
 * It prints what it saw as JSON; tests/test_generated_clients.py type-checks it against the document of the
 * day and runs it against a live order-api.
 */
import createClient from "openapi-fetch";

import type { components, paths } from "@generated/order-api";

type OrderCreate = components["schemas"]["OrderCreate"];
type Problem = components["schemas"]["ProblemDetail"];

const PAYOUT_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
const MISSING_ORDER_ID = "00000000-0000-4000-8000-000000000000";

function fail(message: string): never {
  throw new Error(message);
}

/** `amount` BTC for USDT (TRC20), from a fresh email address. */
function anOrder(amount = "0.05"): OrderCreate {
  return {
    email: `website.${crypto.randomUUID().slice(0, 8)}@example.com`,
    from_currency: "BTC",
    to_currency: "USDT",
    to_network: "TRC20",
    amount,
    payout_address: PAYOUT_USDT,
  };
}

function problemSummary(problem: Problem) {
  return {
    status: problem.status,
    code: problem.code,
    fields: (problem.errors ?? []).map((error) => error.field),
  };
}

export async function orderFlow(baseUrl: string) {
  const desk = createClient<paths>({ baseUrl });

  // Creating an order needs no account: the answer carries a session token for this order.
  const body = anOrder();
  const created = await desk.POST("/v1/orders", { body });
  const order = created.data ?? fail(`creating an order answered ${created.response.status}`);
  const token = order.session_token ?? fail("an anonymous order came without a session token");
  const customer = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

  // Bad input is a problem naming the field.
  const invalid = await desk.POST("/v1/orders", { body: anOrder("-1") });
  const invalidProblem: Problem = invalid.error ?? fail("a negative amount was accepted");

  // Another (here: no) order is a 404 problem.
  const missing = await customer.GET("/v1/orders/{order_id}", {
    params: { path: { order_id: MISSING_ORDER_ID } },
  });
  const missingProblem: Problem = missing.error ?? fail("an order that does not exist was found");

  // Cancel the order as read: a change made since would make this a 412 problem.
  const cancel = await customer.POST("/v1/orders/{order_id}/cancel", {
    params: { path: { order_id: order.id }, header: { "If-Match": `"${order.version}"` } },
  });
  const cancelled = cancel.data ?? fail(`cancelling answered ${cancel.response.status}`);

  return {
    created: {
      id: order.id,
      status: order.status,
      version: order.version,
      sent: body.amount satisfies string, // money is a decimal string both ways, never a float
      amount: order.amount satisfies string,
    },
    invalid: problemSummary(invalidProblem),
    missing: problemSummary(missingProblem),
    cancelled: { id: cancelled.id, status: cancelled.status, version: cancelled.version },
  };
}

const baseUrl = process.argv[2] ?? fail("usage: node dist/src/order-flow.js <order-api URL>");
console.log(JSON.stringify(await orderFlow(baseUrl)));
