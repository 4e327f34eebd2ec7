// A small client of the cache service v2 (twirp JSON plus signed blob URLs), speaking what
// @actions/cache 4.x sends: snake_case request fields, an Azure-style single PUT of the blob.
// Usage: node v2-client.mjs save KEY FILE | restore KEY [RESTORE_KEY...]
// Prints `v2-saved=yes|no`, or `v2-hit=yes|no` with `v2-matched=` and `v2-digest=` (16 hex).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [mode, key, ...rest] = process.argv.slice(2);
const base = `${process.env.ACTIONS_CACHE_URL}twirp/github.actions.results.api.v1.CacheService/`;
const headers = {
  Authorization: `Bearer ${process.env.ACTIONS_RUNTIME_TOKEN}`,
  'Content-Type': 'application/json',
};
const version = 'e2e-v2-client';
const field = (object, snake, camel) => object[snake] ?? object[camel];

async function rpc(method, body) {
  const response = await fetch(base + method, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${method}: ${response.status} ${text}`);
  }
  return JSON.parse(text);
}

if (mode === 'save') {
  const data = readFileSync(rest[0]);
  const created = await rpc('CreateCacheEntry', { key, version });
  const upload = field(created, 'signed_upload_url', 'signedUploadUrl');
  if (!created.ok || !upload) {
    throw new Error(`CreateCacheEntry refused: ${JSON.stringify(created)}`);
  }
  const put = await fetch(upload, {
    method: 'PUT',
    headers: { 'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream' },
    body: data,
  });
  if (!put.ok) {
    throw new Error(`blob PUT: ${put.status} ${await put.text()}`);
  }
  const finalized = await rpc('FinalizeCacheEntryUpload', { key, version, size_bytes: String(data.length) });
  console.log(`v2-saved=${finalized.ok ? 'yes' : 'no'}`);
} else if (mode === 'restore') {
  const found = await rpc('GetCacheEntryDownloadURL', { key, version, restore_keys: rest });
  const download = field(found, 'signed_download_url', 'signedDownloadUrl');
  if (!found.ok || !download) {
    console.log('v2-hit=no');
  } else {
    const response = await fetch(download);
    if (!response.ok) {
      throw new Error(`blob GET: ${response.status}`);
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    console.log('v2-hit=yes');
    console.log(`v2-matched=${field(found, 'matched_key', 'matchedKey')}`);
    console.log(`v2-digest=${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`);
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
