// Bluesky's reference PLC directory + PDS on loopback, for the labeler's end-to-end tests.
//
// Run with Node 22 from the e2e cache (see install.sh / harness.py). ESM ignores NODE_PATH, so the folder
// holding the installed node_modules is given as DEVNET_APP_DIR (install.sh's "$CACHE/app").
//
// Protocol with the parent process:
//   * stdout carries exactly ONE line: a JSON object describing the network (see `info` below).
//   * all logs go to stderr.
//   * the script runs until stdin closes or it receives SIGTERM/SIGINT, then shuts everything down.
//
// Control server (127.0.0.1, random port), for things a real peer cannot do over XRPC:
//   GET  /health       -> {"ok": true}
//   GET  /info         -> the same JSON as the stdout line
//   GET  /mail         -> [{to, subject, template, token, text, sent_at}] emails the PDS "sent", oldest first
//   POST /post-image   {account, image_base64, text?, mime_type?, alt?} -> {uri, cid, blob_cid}
//   POST /ozone        {db_url} -> {url, did, admin_password}: Bluesky's moderation service (Ozone), started on
//                      first use on the given PostgreSQL (its own schema, dropped at shutdown)
//   POST /appview      {db_url} -> {url, did}: Bluesky's reference AppView (see appview.mjs), started on first
//                      use on the given PostgreSQL (its own schema, dropped at shutdown); it indexes the PDS
//   POST /appview/labelers {did} -> {did, endpoint, cursor, accepted, rejected, foreign, error}: the AppView's
//                      stand-in ingester subscribes to that labeler's subscribeLabels (from cursor 0)
//   GET  /appview/labelers -> [the same, per labeler]: how far each feed got

import dns from 'node:dns'
import fs from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import zlib from 'node:zlib'

const LOOPBACK = '127.0.0.1'
const ACCOUNTS = ['alice', 'bob', 'labeler']
const PASSWORD_SUFFIX = '-devnet-password'

const log = (...args) => console.error('[devnet]', ...args)

// Any failure, during start-up or later, ends the process: the parent sees EOF / the exit instead of a hang.
const die = (err) => {
  log('fatal:', err)
  process.exit(1)
}
process.on('uncaughtException', die)
process.on('unhandledRejection', die)

// ---------------------------------------------------------------------------------------------------------
// Process hygiene: stdout is reserved for the single JSON line, every listener stays on loopback.

const writeStdoutLine = (line) => fs.writeSync(1, line + '\n')
console.log = console.error
console.info = console.error
process.stdout.write = process.stderr.write.bind(process.stderr)
if (/^(true|t|1)$/i.test(process.env.LOG_ENABLED ?? '') && !process.env.LOG_DESTINATION) {
  // @atproto's pino loggers write to fd 1 by default; this env is read when the modules load.
  process.env.LOG_DESTINATION = '/dev/stderr'
}

// The reference servers call `listen(port)` which binds every interface; force loopback instead.
const originalListen = net.Server.prototype.listen
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0]
  if (args.length === 0 || typeof first === 'function') {
    return originalListen.call(this, 0, LOOPBACK, ...args)
  }
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, LOOPBACK)
    return originalListen.apply(this, args)
  }
  if (first && typeof first === 'object' && !('path' in first) && !('fd' in first) && !('_handle' in first)
      && !('handle' in first) && first.host === undefined) {
    args[0] = { ...first, host: LOOPBACK }
  }
  return originalListen.apply(this, args)
}
// `localhost` must reach servers bound to 127.0.0.1 (the PDS proxies to `http://localhost:PORT` endpoints).
dns.setDefaultResultOrder('ipv4first')

// Imported only now so the env tweaks above apply when the modules initialise.
const appDir = process.env.DEVNET_APP_DIR
const devEnvEntry = appDir
  ? pathToFileURL(createRequire(path.join(appDir, 'package.json')).resolve('@atproto/dev-env')).href
  : '@atproto/dev-env'
const { TestPlc, TestPds, TestOzone, TestBsky } = await import(devEnvEntry)
const requireFromApp = createRequire(path.join(appDir ?? process.cwd(), 'package.json'))

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

/** A tiny valid RGB PNG (a colour gradient), so the seed needs no image file or image library. */
function makePng(width = 64, height = 64, seed = 0) {
  const crcChunk = (type, data) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data])
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(zlib.crc32(body) >>> 0)
    return Buffer.concat([len, body, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: RGB
  const raw = Buffer.alloc(height * (1 + width * 3))
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3)
    raw[row] = 0 // filter: none
    for (let x = 0; x < width; x++) {
      const p = row + 1 + x * 3
      raw[p] = (x * 4 + seed) & 0xff
      raw[p + 1] = (y * 4 + seed * 3) & 0xff
      raw[p + 2] = ((x ^ y) * 4) & 0xff
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    crcChunk('IHDR', ihdr),
    crcChunk('IDAT', zlib.deflateSync(raw)),
    crcChunk('IEND', Buffer.alloc(0)),
  ])
}

/** Guess an image MIME type from magic bytes (the PDS sniffs too, but the upload needs a content-type). */
function sniffMime(bytes) {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png'
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'image/jpeg'
  if (bytes.subarray(0, 4).toString('ascii') === 'GIF8') return 'image/gif'
  if (bytes.subarray(0, 4).toString('ascii') === 'RIFF' && bytes.subarray(8, 12).toString('ascii') === 'WEBP') {
    return 'image/webp'
  }
  return 'application/octet-stream'
}

/** Read width/height from a PNG header, for the post's aspectRatio (undefined for other formats). */
function pngSize(bytes) {
  if (sniffMime(bytes) !== 'image/png' || bytes.length < 24) return undefined
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) }
}

/** Plain XRPC over fetch: the harness needs only a handful of calls, so no client library. */
async function xrpc(baseUrl, nsid, { method = 'GET', body, headers = {}, accessJwt, params } = {}) {
  const url = new URL(`/xrpc/${nsid}`, baseUrl)
  for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, v)
  const h = { ...headers }
  if (accessJwt) h.authorization = `Bearer ${accessJwt}`
  let payload = body
  if (body !== undefined && !(body instanceof Uint8Array)) {
    h['content-type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  const res = await fetch(url, { method, headers: h, body: payload })
  const text = await res.text()
  if (!res.ok) throw new Error(`${nsid} failed: HTTP ${res.status}: ${text}`)
  return text ? JSON.parse(text) : {}
}

// ---------------------------------------------------------------------------------------------------------
// Start the network.

const started = Date.now()
const plc = await TestPlc.create({})
log(`PLC on ${plc.url}`)
const pds = await TestPds.create({
  didPlcUrl: plc.url,
  // Tests change DID documents (labeler key + endpoint) and expect the PDS to see it at once:
  // a 1 ms TTL makes every resolution go to the PLC (cheap on loopback).
  didCacheStaleTTL: 1,
  didCacheMaxTTL: 1,
})
log(`PDS on ${pds.url}`)

// Capture the PDS's outgoing mail. dev-env's PDS has no SMTP URL, so nodemailer's JSON transport drops it;
// wrapping ServerMailer.sendTemplate keeps the template parameters (the token) as well as the headers.
const mail = []
const mailer = pds.ctx.mailer
const originalSendTemplate = mailer.sendTemplate.bind(mailer)
mailer.sendTemplate = async (templateName, params, mailOpts) => {
  const res = await originalSendTemplate(templateName, params, mailOpts)
  let text = ''
  try {
    const parsed = typeof res?.message === 'string' ? JSON.parse(res.message) : undefined
    text = parsed?.text ?? ''
  } catch {
    // the JSON transport's message is best-effort context only
  }
  const token = typeof params?.token === 'string' ? params.token : (text.match(/\b[A-Z2-7]{5}-[A-Z2-7]{5}\b/)?.[0] ?? null)
  const to = Array.isArray(mailOpts?.to) ? mailOpts.to.join(', ') : String(mailOpts?.to ?? '')
  mail.push({ to, subject: mailOpts?.subject ?? '', template: templateName, token, text, sent_at: new Date().toISOString() })
  log(`mail to ${to}: ${mailOpts?.subject} (token ${token})`)
  return res
}

const pdsUrl = `http://${LOOPBACK}:${pds.port}`
const plcUrl = `http://${LOOPBACK}:${plc.port}`

// ---------------------------------------------------------------------------------------------------------
// Seed accounts and one image post.

const accounts = {}
for (const name of ACCOUNTS) {
  const handle = `${name}.test`
  const password = `${name}${PASSWORD_SUFFIX}`
  const email = `${name}@example.com`
  const res = await xrpc(pdsUrl, 'com.atproto.server.createAccount', {
    method: 'POST',
    body: { handle, email, password },
  })
  accounts[name] = {
    did: res.did,
    handle: res.handle,
    password,
    email,
    access_jwt: res.accessJwt,
    refresh_jwt: res.refreshJwt,
  }
  log(`account ${handle} = ${res.did}`)
}

/** Upload an image as `account` and post it with an images embed; used by the seed and /post-image. */
async function postImage(accountName, imageBytes, text, mimeType, alt) {
  const account = accounts[accountName]
  if (!account) throw new Error(`unknown account ${JSON.stringify(accountName)}; known: ${Object.keys(accounts)}`)
  const upload = await xrpc(pdsUrl, 'com.atproto.repo.uploadBlob', {
    method: 'POST',
    body: new Uint8Array(imageBytes),
    headers: { 'content-type': mimeType ?? sniffMime(imageBytes) },
    accessJwt: account.access_jwt,
  })
  const image = { alt: alt ?? '', image: upload.blob }
  const size = pngSize(imageBytes)
  if (size) image.aspectRatio = size
  const record = {
    $type: 'app.bsky.feed.post',
    text: text ?? '',
    createdAt: new Date().toISOString(),
    embed: { $type: 'app.bsky.embed.images', images: [image] },
  }
  const created = await xrpc(pdsUrl, 'com.atproto.repo.createRecord', {
    method: 'POST',
    body: { repo: account.did, collection: 'app.bsky.feed.post', record },
    accessJwt: account.access_jwt,
  })
  return { uri: created.uri, cid: created.cid, blob_cid: upload.blob.ref.$link }
}

const seedImagePath = process.env.DEVNET_SEED_IMAGE
const seedImage = seedImagePath ? fs.readFileSync(seedImagePath) : makePng()
const post = await postImage('alice', seedImage, 'hello from the devnet', undefined, 'a gradient')
log(`seeded post ${post.uri} (blob ${post.blob_cid})`)

// ---------------------------------------------------------------------------------------------------------
// Control server.

const readBody = (req) =>
  new Promise((resolve, reject) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })

const sendJson = (res, status, value) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

let info // filled in below, before the control server can be reached

// ---------------------------------------------------------------------------------------------------------
// Ozone on demand: only the tests that report upstream pay for it (and need PostgreSQL).

/** `start(dbUrl)` on first use, shared by concurrent callers (a failed start is retried); `.value` once up. */
function onDemand(start) {
  let starting
  const get = async (dbUrl) => {
    starting ??= start(dbUrl)
    try {
      get.value = await starting
    } catch (err) {
      starting = undefined
      throw err
    }
    return get.value
  }
  return get
}

/** A free loopback port (Ozone's DID document must name its URL before Ozone listens). */
const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, LOOPBACK, () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })

async function startOzone(dbUrl) {
  const { Secp256k1Keypair } = await import(pathToFileURL(requireFromApp.resolve('@atproto/crypto')).href)
  const plcLib = await import(pathToFileURL(requireFromApp.resolve('@did-plc/lib')).href)
  const port = await freePort()
  const url = `http://localhost:${port}`
  // Its own DID, whose #atproto_labeler endpoint is where it really listens (dev-env's default names a
  // placeholder host), so PDSes can proxy reports to it and reporters can find it.
  const key = await Secp256k1Keypair.create({ exportable: true })
  const op = await plcLib.signOperation(
    {
      type: 'plc_operation',
      alsoKnownAs: [],
      rotationKeys: [key.did()],
      verificationMethods: { atproto_label: key.did() },
      services: { atproto_labeler: { type: 'AtprotoLabeler', endpoint: url } },
      prev: null,
    },
    key,
  )
  const did = await plcLib.didForCreateOp(op)
  await new plcLib.Client(plcUrl).sendOperation(did, op)
  // Ozone takes letters and underscores only; one schema per devnet process, dropped at shutdown.
  const schema = `ozone_devnet_${String(process.pid).replace(/\d/g, (d) => 'abcdefghij'[d])}`
  const server = await TestOzone.create({
    port,
    plcUrl,
    signingKey: key,
    serverDid: did,
    dbPostgresUrl: dbUrl,
    dbPostgresSchema: schema,
    // No AppView here: Ozone only hydrates views from it and fails open when it cannot.
    appviewUrl: 'http://localhost:9',
    appviewDid: 'did:web:appview.invalid',
  })
  log(`Ozone on ${url} as ${did} (schema ${schema})`)
  return { server, schema, dbUrl, info: { url, did, admin_password: 'admin-pass' } }
}

async function stopOzone() {
  const ozone = ozoneService.value // {server, info, schema, dbUrl}
  if (!ozone) return
  await ozone.server.close()
  const { Client } = requireFromApp('pg')
  const client = new Client({ connectionString: ozone.dbUrl })
  await client.connect()
  await client.query(`DROP SCHEMA IF EXISTS "${ozone.schema}" CASCADE`)
  await client.end()
}

// ---------------------------------------------------------------------------------------------------------
// The AppView on demand, like Ozone: only the tests that ask what Bluesky shows pay for it.

const ozoneService = onDemand(startOzone)
const appviewService = onDemand(async (dbUrl) => { // {info, feedLabels, labelers, close}
  const { startAppView } = await import(new URL('./appview.mjs', import.meta.url).href)
  return startAppView({ appDir, TestBsky, plcUrl, pdsPort: pds.port, dbUrl, log })
})
const onDemandRoutes = { '/ozone': ozoneService, '/appview': appviewService }

const control = http.createServer(async (req, res) => {
  try {
    const path = new URL(req.url ?? '/', 'http://control').pathname
    if (req.method === 'GET' && path === '/health') return sendJson(res, 200, { ok: true })
    if (req.method === 'GET' && path === '/info') return sendJson(res, 200, info)
    if (req.method === 'GET' && path === '/mail') return sendJson(res, 200, mail)
    if (req.method === 'POST' && path === '/post-image') {
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}')
      if (typeof body.image_base64 !== 'string') return sendJson(res, 400, { error: 'image_base64 is required' })
      const bytes = Buffer.from(body.image_base64, 'base64')
      const out = await postImage(body.account ?? 'alice', bytes, body.text, body.mime_type, body.alt)
      return sendJson(res, 200, out)
    }
    if (req.method === 'POST' && Object.hasOwn(onDemandRoutes, path)) {
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}')
      if (typeof body.db_url !== 'string') return sendJson(res, 400, { error: 'db_url is required' })
      return sendJson(res, 200, (await onDemandRoutes[path](body.db_url)).info)
    }
    if (path === '/appview/labelers') {
      const appview = appviewService.value
      if (!appview) return sendJson(res, 409, { error: 'start the AppView first (POST /appview)' })
      if (req.method === 'GET') return sendJson(res, 200, appview.labelers())
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}')
      if (typeof body.did !== 'string') return sendJson(res, 400, { error: 'did is required' })
      return sendJson(res, 200, await appview.feedLabels(body.did))
    }
    return sendJson(res, 404, { error: `no route ${req.method} ${path}` })
  } catch (err) {
    log('control error:', err)
    return sendJson(res, 500, { error: String(err?.message ?? err) })
  }
})
control.listen(0, LOOPBACK)
await new Promise((resolve) => control.once('listening', resolve))
const controlUrl = `http://${LOOPBACK}:${control.address().port}`

info = {
  plc_url: plcUrl,
  pds_url: pdsUrl,
  // The PDS's own public URL, as written in its accounts' DID documents.
  pds_public_url: pds.url,
  control_url: controlUrl,
  accounts,
  post,
  pid: process.pid,
}
writeStdoutLine(JSON.stringify(info))
log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s; control on ${controlUrl}`)

// ---------------------------------------------------------------------------------------------------------
// Shutdown: stdin EOF (parent died or closed the pipe), SIGTERM or SIGINT.

let stopping = false
async function shutdown(reason) {
  if (stopping) return
  stopping = true
  log(`shutting down (${reason})`)
  const hardExit = setTimeout(() => {
    log('shutdown timed out; exiting')
    process.exit(0)
  }, 10_000)
  hardExit.unref()
  try {
    control.closeAllConnections?.()
    await new Promise((resolve) => control.close(() => resolve()))
    await stopOzone()
    await appviewService.value?.close()
    await pds.close()
    await plc.close()
  } catch (err) {
    log('error during shutdown:', err)
  }
  log('stopped')
  process.exit(0)
}

process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
process.stdin.on('end', () => void shutdown('stdin closed'))
process.stdin.on('error', () => void shutdown('stdin error'))
process.stdin.resume()
