// One timed tus-js-client upload of a file, for bench/ingest.py; prints one JSON line.
//
// Why a separate script: the benchmark must drive every server with the *same* client and
// settings, and tus-js-client is the client our users run (the admin page bundles it). It
// is loaded from web/node_modules, the version pinned in web/package-lock.json.
//
// Usage: node bench/tus_upload.mjs '{"file": PATH, "endpoint": URL, ...}'
//   file       path of the bytes to upload (a path-backed ReadStream: read from disk)
//   endpoint   creation URL
//   headers    extra request headers (e.g. Authorization)
//   chunkSize  bytes per PATCH; null (the default) = Infinity, one PATCH
//   timeoutMs  give up after this long (default 600000)
//
// Result: {ok, seconds, bytes, uploadUrl, requests: [{method, status, ms}], error}.
// `seconds` runs from start() (the creation POST is about to be sent) to onSuccess (the
// last PATCH answered 204): the upload time as the client sees it. No retries: a failed
// request fails the run instead of being hidden in the figure.

import { createReadStream, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(path.join(here, '..', 'web', 'package.json'))
const tus = require('tus-js-client')

const args = JSON.parse(process.argv[2] || '{}')
if (!args.file || !args.endpoint) {
  process.stdout.write(JSON.stringify({ ok: false, error: 'file and endpoint are required' }) + '\n')
  process.exit(2)
}

const bytes = statSync(args.file).size
const requests = []
const pending = new Map()
const result = { ok: false, seconds: null, bytes, uploadUrl: null, requests, error: null }

function print (code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}

const timer = setTimeout(() => {
  result.error = `timed out after ${args.timeoutMs || 600000} ms`
  print(1)
}, args.timeoutMs || 600000)

let started = 0
const upload = new tus.Upload(createReadStream(args.file), {
  endpoint: args.endpoint,
  headers: args.headers || {},
  metadata: { filename: path.basename(args.file), filetype: 'application/octet-stream' },
  chunkSize: args.chunkSize == null ? Number.POSITIVE_INFINITY : args.chunkSize,
  retryDelays: null,
  storeFingerprintForResuming: false,
  onBeforeRequest (req) {
    pending.set(req, performance.now())
  },
  onAfterResponse (req, res) {
    const t0 = pending.get(req)
    requests.push({
      method: req.getMethod(),
      status: res.getStatus(),
      ms: t0 == null ? null : Math.round((performance.now() - t0) * 10) / 10
    })
  },
  onError (err) {
    clearTimeout(timer)
    result.error = String(err && err.message).slice(0, 500)
    print(1)
  },
  onSuccess () {
    result.seconds = (performance.now() - started) / 1000
    clearTimeout(timer)
    result.ok = true
    result.uploadUrl = upload.url
    print(0)
  }
})
started = performance.now()
upload.start()
