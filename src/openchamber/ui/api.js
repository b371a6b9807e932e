// The bridge's REST commands (docs/BRIDGE.md). The bridge's cookie authenticates them.

export class ApiError extends Error {
  constructor(message, { status = 0, hint = "", network = false } = {}) {
    super(message);
    this.status = status;
    this.hint = hint;
    this.network = network; // no answer at all: the request may or may not have arrived
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (failure) {
    throw new ApiError(`network error: ${failure.message}`, { network: true });
  }
  const text = await response.text().catch(() => "");
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(message, { status: response.status, hint: data?.hint || "" });
  }
  return data;
}

export const sessionPath = (sessionID, rest = "") => `/api/sessions/${encodeURIComponent(sessionID)}${rest}`;
