// The public API, from the app. The session is an HttpOnly cookie the script never sees; every
// request says it comes from the app (`X-Points-Client: wallet`, or `staff` from the staff app,
// which imports this module and calls `setClient("staff")`), which with the browser's Origin
// header is what the server's cross-site check looks for (docs/wallet-app.md).

let client = "wallet";

// The app this page is: the value of the X-Points-Client header.
export function setClient(name) {
  client = name;
}

export class Refused extends Error {
  // The API said no: `problem` is its problem+json (status, code, and any extra fields).
  constructor(problem) {
    super(problem.code || "refused");
    this.problem = problem;
  }
}

export class Unreachable extends Error {
  // No answer (offline, the connection cut, a proxy's page): whether the request had an effect is
  // unknown, so a value-moving request is sent again with the same Idempotency-Key.
  constructor(cause) {
    super("network");
    this.cause = cause;
  }
}

export function newKey() {
  return crypto.randomUUID();
}

export async function call(method, path, { body, key } = {}) {
  const headers = { Accept: "application/json", "X-Points-Client": client };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new Unreachable(error);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("json")) throw new Unreachable(new Error(`HTTP ${response.status}`));
  let data;
  try {
    data = await response.json();
  } catch (error) {
    throw new Unreachable(error);
  }
  if (!response.ok) throw new Refused({ status: response.status, ...data });
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body, key) => call("POST", path, { body: body ?? {}, key });
export const put = (path, body) => call("PUT", path, { body });
