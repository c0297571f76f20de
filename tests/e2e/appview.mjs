// Bluesky's reference AppView (@atproto/bsky) for devnet.mjs, started on demand, with a stand-in label ingester.
//
// The open-source AppView only reads labels from its Postgres `label` table; Bluesky's production ingester, which
// subscribes to labelers, is closed source. `feedLabels` stands in for it as consumers are specified to behave:
// it finds the labeler's endpoint and key in its DID document, subscribes to its subscribeLabels from cursor 0,
// verifies every label's signature against the `#atproto_label` key (re-resolving the DID once on a mismatch, as
// after a rotation), keeps only labels whose `src` is the labeler it subscribed to, and upserts them (a negation
// overwrites its positive row; the AppView hides negated and expired rows itself).

import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const RECONNECT_MS = 200

export async function startAppView({ appDir, TestBsky, plcUrl, pdsPort, dbUrl, log }) {
  const requireFromApp = createRequire(path.join(appDir ?? process.cwd(), 'package.json'))
  const load = (name) => import(pathToFileURL(requireFromApp.resolve(name)).href)
  const [{ decodeAll, encode }, { verifySignature }, { IdResolver, getDidKeyFromMultibase }, didDoc] =
    await Promise.all([load('@atproto/lex-cbor'), load('@atproto/crypto'), load('@atproto/identity'),
      load('@atproto/common-web')])

  // One schema per devnet process (letters and underscores only), dropped at shutdown.
  const schema = `appview_devnet_${String(process.pid).replace(/\d/g, (d) => 'abcdefghij'[d])}`
  const started = Date.now()
  const bsky = await TestBsky.create({
    plcUrl,
    repoProvider: `ws://localhost:${pdsPort}`,
    dbPostgresUrl: dbUrl,
    dbPostgresSchema: schema,
    // Mutes and bookmarks only; the labels question needs no bsync, so its subscription is stopped below.
    bsyncUrl: 'http://localhost:9',
  })
  await bsky.bsyncSub.destroy()
  log(`AppView on ${bsky.url} as ${bsky.serverDid} (schema ${schema}) in ${Date.now() - started} ms`)

  // Plain fetch: the identity package's default one refuses the loopback PLC ("Invalid hostname").
  const idResolver = new IdResolver({ plcUrl, timeout: 3000, fetch: globalThis.fetch })
  const labelers = new Map() // did -> state

  async function labelKey(did, forceRefresh) {
    const doc = await idResolver.did.resolve(did, forceRefresh)
    const material = doc && didDoc.getVerificationMaterial(doc, 'atproto_label')
    return material ? getDidKeyFromMultibase(material) : undefined
  }

  async function verified(label) {
    const { sig, ...unsigned } = label
    if (!(sig instanceof Uint8Array)) return false
    const message = encode(unsigned)
    for (const forceRefresh of [false, true]) {
      const key = await labelKey(label.src, forceRefresh)
      if (key && (await verifySignature(key, message, sig).catch(() => false))) return true
    }
    return false
  }

  async function ingest(state, body) {
    for (const label of Array.isArray(body.labels) ? body.labels : []) {
      if (label.src !== state.did) {
        state.foreign += 1
      } else if (!(await verified(label))) {
        state.rejected += 1
        log(`AppView ingester: rejected a label of ${label.src} on ${label.uri} (bad signature)`)
      } else {
        const row = { src: label.src, uri: label.uri, cid: label.cid ?? '', val: label.val, neg: label.neg === true,
          cts: label.cts, exp: label.exp ?? null }
        await bsky.db.db.insertInto('label').values(row)
          .onConflict((oc) => oc.columns(['src', 'uri', 'cid', 'val']).doUpdateSet({ neg: row.neg, cts: row.cts,
            exp: row.exp }))
          .execute()
        state.accepted += 1
      }
    }
    state.cursor = body.seq
  }

  function connect(state) {
    const ws = new WebSocket(`${state.endpoint.replace(/^http/, 'ws')}/xrpc/com.atproto.label.subscribeLabels`
      + `?cursor=${state.cursor}`)
    ws.binaryType = 'arraybuffer'
    let queue = Promise.resolve() // frames are applied in order
    ws.onmessage = (event) => {
      queue = queue.then(async () => {
        const [header, body] = decodeAll(new Uint8Array(event.data))
        if (header.op === -1) state.error = `${body.error}: ${body.message ?? ''}`
        else if (header.t === '#labels') await ingest(state, body)
      }).catch((err) => {
        state.error = String(err?.message ?? err)
        log('AppView ingester:', err)
      })
    }
    ws.onclose = () => {
      if (!state.stopped) state.timer = setTimeout(() => connect(state), RECONNECT_MS)
    }
    state.ws = ws
  }

  function stopFeeding(state) {
    state.stopped = true
    clearTimeout(state.timer)
    state.ws?.close()
  }

  /** Subscribe to the labeler `did` names as its #atproto_labeler (again from cursor 0 if already fed). */
  async function feedLabels(did) {
    const doc = await idResolver.did.resolve(did, true)
    const endpoint = doc && didDoc.getServiceEndpoint(doc, { id: '#atproto_labeler', type: 'AtprotoLabeler' })
    if (!endpoint) throw new Error(`${did} names no #atproto_labeler endpoint`)
    if (labelers.has(did)) stopFeeding(labelers.get(did))
    const state = { did, endpoint, cursor: 0, accepted: 0, rejected: 0, foreign: 0, error: null, stopped: false }
    labelers.set(did, state)
    connect(state)
    return report(state)
  }

  const report = ({ did, endpoint, cursor, accepted, rejected, foreign, error }) =>
    ({ did, endpoint, cursor, accepted, rejected, foreign, error })

  async function close() {
    for (const state of labelers.values()) stopFeeding(state)
    await bsky.close()
    const { Client } = requireFromApp('pg')
    const client = new Client({ connectionString: dbUrl })
    await client.connect()
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await client.end()
  }

  return {
    info: { url: bsky.url, did: bsky.serverDid },
    feedLabels,
    labelers: () => [...labelers.values()].map(report),
    close,
  }
}
