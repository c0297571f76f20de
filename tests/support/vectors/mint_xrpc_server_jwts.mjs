// Regenerates xrpc_server_service_jwts.json: service JWTs minted by Bluesky's reference
// `@atproto/xrpc-server` createServiceJwt (with `@atproto/crypto` keypairs), for test_service_auth.py.
// Run with Node 22: ATPROTO_NODE_MODULES=/path/to/node_modules node mint_xrpc_server_jwts.mjs > xrpc_server_service_jwts.json
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(`${process.env.ATPROTO_NODE_MODULES}/`)
const { createServiceJwt } = require('@atproto/xrpc-server')
const crypto = require('@atproto/crypto')
const versions = Object.fromEntries(
  ['@atproto/xrpc-server', '@atproto/crypto'].map((n) => [
    n,
    JSON.parse(readFileSync(`${process.env.ATPROTO_NODE_MODULES}/${n}/package.json`, 'utf8')).version,
  ]),
)

// Fixed test-only secrets, so the issuer keys are the same on every run.
const secrets = {
  k256: '9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c',
  p256: '4a2c8f6e0b3d5e7f9a1c3e5f7a9b1d3f5e7a9c1e3f5a7b9d1f3e5a7c9e1b3d5f',
}
const labeler = 'did:plc:labelerlabelerlabelerabc'
const iat = 1750000000
const cases = []
for (const [curve, secret] of Object.entries(secrets)) {
  const keypair =
    curve === 'k256' ? await crypto.Secp256k1Keypair.import(secret) : await crypto.P256Keypair.import(secret)
  for (const aud of [labeler, `${labeler}#atproto_labeler`]) {
    const iss = curve === 'k256' ? 'did:plc:reporterk256reporterk256' : 'did:plc:reporterp256reporterp256'
    const jwt = await createServiceJwt({ iss, aud, lxm: 'com.atproto.moderation.createReport', keypair, iat })
    cases.push({ note: `${curve} issuer, aud ${aud === labeler ? 'bare DID' : 'DID#atproto_labeler'}`,
      curve, secret, did_key: keypair.did(), iss, aud, now: iat, jwt })
  }
}
console.log(JSON.stringify({ source: versions, generator: 'mint_xrpc_server_jwts.mjs', cases }, null, 2))
