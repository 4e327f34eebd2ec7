'use strict'
// A small client of the artifact v4 protocol as @actions/artifact 2.x speaks it, for tests (no
// npm here): backend ids from the runtime token's `scp` claim, twirp JSON calls with proto field
// names to `${origin of ACTIONS_RESULTS_URL}/twirp/github.actions.results.api.v1.ArtifactService/`,
// the zip put to the signed URL as Azure block blob blocks plus a block list, then FinalizeArtifact
// with size and sha256; downloads list, ask for a signed URL and unzip what it serves.
// Inputs: INPUT_MODE (upload, download, list), INPUT_NAME, INPUT_PATH.

const crypto = require('crypto')
const fs = require('fs')
const path = require('path')
const zlib = require('zlib')

const SERVICE = 'github.actions.results.api.v1.ArtifactService'
const BLOCK_BYTES = 1024 * 1024

function backendIds () {
  const token = process.env.ACTIONS_RUNTIME_TOKEN || ''
  const parts = token.split('.')
  if (parts.length !== 3) throw new Error('Unable to get the ACTIONS_RUNTIME_TOKEN env variable')
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
  for (const scope of String(claims.scp || '').split(' ')) {
    const fields = scope.split(':')
    if (fields[0] === 'Actions.Results' && fields.length === 3) {
      return { workflow_run_backend_id: fields[1], workflow_job_run_backend_id: fields[2] }
    }
  }
  throw new Error('Failed to get backend IDs: The provided JWT token is invalid and/or missing claims')
}

async function twirp (method, body) {
  const origin = new URL(process.env.ACTIONS_RESULTS_URL).origin
  const url = new URL(`/twirp/${SERVICE}/${method}`, origin).href
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Authorization: `Bearer ${process.env.ACTIONS_RUNTIME_TOKEN}`,
      'User-Agent': '@actions/artifact-2.3.2'
    },
    body: JSON.stringify(body)
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`Failed to ${method}: HTTP ${response.status}: ${text.trim()}`)
  return JSON.parse(text)
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

function crc32 (bytes) {
  let crc = 0xffffffff
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

function filesUnder (root) {
  const found = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : 1)) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.isFile()) found.push(full)
    }
  }
  walk(root)
  return found
}

// A zip of the files under `root`, deflated as the toolkit's archiver does.
function zipDirectory (root) {
  const locals = []
  const centrals = []
  let offset = 0
  for (const file of filesUnder(root)) {
    const name = Buffer.from(path.relative(root, file).split(path.sep).join('/'))
    const data = fs.readFileSync(file)
    const packed = zlib.deflateRawSync(data)
    const crc = crc32(data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt16LE(0x0800, 6)
    local.writeUInt16LE(8, 8)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(packed.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(name.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt16LE(0x0800, 8)
    central.writeUInt16LE(8, 10)
    central.writeUInt32LE(crc, 16)
    central.writeUInt32LE(packed.length, 20)
    central.writeUInt32LE(data.length, 24)
    central.writeUInt16LE(name.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, name, packed)
    centrals.push(central, name)
    offset += local.length + name.length + packed.length
  }
  const directory = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(centrals.length / 2, 8)
  end.writeUInt16LE(centrals.length / 2, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, directory, end])
}

function unzipInto (zip, root) {
  let end = zip.length - 22
  while (end >= 0 && zip.readUInt32LE(end) !== 0x06054b50) end--
  if (end < 0) throw new Error('not a zip archive')
  const count = zip.readUInt16LE(end + 10)
  let at = zip.readUInt32LE(end + 16)
  let written = 0
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory')
    const method = zip.readUInt16LE(at + 10)
    const crc = zip.readUInt32LE(at + 16)
    const packedSize = zip.readUInt32LE(at + 20)
    const nameLength = zip.readUInt16LE(at + 28)
    const extraLength = zip.readUInt16LE(at + 30)
    const commentLength = zip.readUInt16LE(at + 32)
    const localAt = zip.readUInt32LE(at + 42)
    const name = zip.slice(at + 46, at + 46 + nameLength).toString('utf8')
    at += 46 + nameLength + extraLength + commentLength
    const dataAt = localAt + 30 + zip.readUInt16LE(localAt + 26) + zip.readUInt16LE(localAt + 28)
    const packed = zip.slice(dataAt, dataAt + packedSize)
    const data = method === 8 ? zlib.inflateRawSync(packed) : packed
    if (crc32(data) !== crc) throw new Error(`${name}: checksum mismatch`)
    const target = path.resolve(root, name)
    if (!target.startsWith(path.resolve(root) + path.sep)) throw new Error(`${name}: outside the destination`)
    if (name.endsWith('/')) continue
    fs.mkdirSync(path.dirname(target), { recursive: true })
    fs.writeFileSync(target, data)
    written++
  }
  return written
}

async function upload (name, root) {
  const ids = backendIds()
  const created = await twirp('CreateArtifact', { ...ids, name, version: 4 })
  const signedUrl = created.signed_upload_url || created.signedUploadUrl
  if (!(created.ok && signedUrl)) throw new Error('CreateArtifact: Response was not ok')
  const zip = zipDirectory(root)
  const prefix = crypto.randomUUID().replace(/-/g, '')
  const blockIds = []
  for (let start = 0, index = 0; start < zip.length || index === 0; start += BLOCK_BYTES, index++) {
    const blockId = Buffer.from(prefix + String(index).padStart(16, '0')).toString('base64')
    const block = zip.slice(start, start + BLOCK_BYTES)
    const response = await fetch(`${signedUrl}&comp=block&blockid=${encodeURIComponent(blockId)}`, {
      method: 'PUT',
      headers: { 'x-ms-version': '2024-11-04', 'Content-Length': String(block.length) },
      body: block
    })
    if (!response.ok) throw new Error(`block upload: HTTP ${response.status}`)
    blockIds.push(blockId)
  }
  const list = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>' +
    blockIds.map((id) => `<Latest>${id}</Latest>`).join('') + '</BlockList>'
  const committed = await fetch(`${signedUrl}&comp=blocklist`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/xml', 'x-ms-blob-content-type': 'application/zip' },
    body: list
  })
  if (!committed.ok) throw new Error(`block list: HTTP ${committed.status}`)
  const hash = crypto.createHash('sha256').update(zip).digest('hex')
  const finalized = await twirp('FinalizeArtifact', { ...ids, name, size: String(zip.length), hash: `sha256:${hash}` })
  if (!finalized.ok) throw new Error('FinalizeArtifact: Response was not ok')
  console.log(`uploaded artifact ${name}: id ${finalized.artifact_id || finalized.artifactId}, ${zip.length} bytes`)
}

async function list (nameFilter) {
  const request = { ...backendIds() }
  if (nameFilter) request.name_filter = nameFilter
  const listed = await twirp('ListArtifacts', request)
  return (listed.artifacts || []).map((artifact) => artifact.name).sort()
}

async function download (name, root) {
  const found = await list(name)
  if (!found.includes(name)) throw new Error(`Artifact not found for name: ${name}`)
  const signed = await twirp('GetSignedArtifactURL', { ...backendIds(), name })
  const response = await fetch(signed.signed_url || signed.signedUrl)
  if (!response.ok) throw new Error(`download: HTTP ${response.status}`)
  const zip = Buffer.from(await response.arrayBuffer())
  const written = unzipInto(zip, root)
  console.log(`downloaded artifact ${name}: ${written} files`)
}

async function main () {
  const mode = process.env.INPUT_MODE || 'upload'
  const name = process.env.INPUT_NAME || 'artifact'
  const root = path.resolve(process.env.GITHUB_WORKSPACE || '.', process.env.INPUT_PATH || '.')
  try {
    if (mode === 'upload') await upload(name, root)
    else if (mode === 'download') await download(name, root)
    else if (mode === 'list') console.log(`artifacts: ${(await list('')).join(',')}`)
    else throw new Error(`unknown mode ${mode}`)
  } catch (error) {
    console.log(`::error::${error.message}`)
    process.exitCode = 1
  }
}

module.exports = { main }
