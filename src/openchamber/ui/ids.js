// Client-made ids that sort where OpenCode's own would (same scheme as openchamber/ids.py):
// `<prefix>_` + 12 hex digits of (ms * 0x1000 + counter) & 0xFFFFFFFFFFFF + 14 random base62.

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS = 14;
let lastMs = 0;
let counter = 0;

function randomTail() {
  // Rejection sampling keeps the characters uniform (256 is not a multiple of 62).
  let out = "";
  while (out.length < RANDOM_CHARS) {
    for (const byte of crypto.getRandomValues(new Uint8Array(RANDOM_CHARS * 2))) {
      if (byte < 248 && out.length < RANDOM_CHARS) out += BASE62[byte % 62];
    }
  }
  return out;
}

export function ascending(prefix, nowMs = Date.now()) {
  if (nowMs !== lastMs) {
    lastMs = nowMs;
    counter = 0;
  }
  counter += 1;
  // BigInt: ms * 4096 passes 2^53 in 2039.
  const stamp = (BigInt(nowMs) * 0x1000n + BigInt(counter)) & 0xffffffffffffn;
  return `${prefix}_${stamp.toString(16).padStart(12, "0")}${randomTail()}`;
}

export const messageId = () => ascending("msg");
export const partId = () => ascending("prt");
