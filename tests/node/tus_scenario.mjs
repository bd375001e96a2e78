// One tus-js-client upload, driven by a JSON argument, reported as one JSON line.
//
// Why: tus-js-client is the most used tus client; running the real library under Node
// against our server checks the protocol the way browsers and apps will exercise it
// (tests/e2e/test_tus_js_client.py). It is loaded from web/node_modules so the tests use
// exactly the version the admin page is bundled with (web/package-lock.json).
//
// Usage: node tests/node/tus_scenario.mjs '{"endpoint": "http://127.0.0.1:PORT/files", ...}'
//
// Options (all optional but `file`, and `endpoint` unless `uploadUrl` is given):
//   file                     path of the bytes to upload
//   endpoint                 creation URL
//   headers                  extra request headers (e.g. Authorization)
//   metadata                 Upload-Metadata (default: {filename, filetype})
//   chunkSize                bytes per PATCH (default: Infinity, one request)
//   uploadDataDuringCreation creation-with-upload
//   uploadLengthDeferred     creation-defer-length; the input is then a plain stream.Readable
//                            (its size unknown to the client until it ends)
//   parallelUploads          N partial uploads + a final one (concatenation)
//   overridePatchMethod      PATCH sent as POST + X-HTTP-Method-Override
//   abortAfterBytes          abort once onProgress reports this many bytes (the upload is
//                            left unfinished, to be resumed by a later run). tus-js-client
//                            reports progress at most every 100 ms and counts bytes handed
//                            to the socket, so with a finite chunkSize the abort lands
//                            within the chunk after the mark or right after it
//   terminate                with abortAfterBytes: abort(true) (DELETE); otherwise DELETE
//                            the upload after it succeeded (tus.Upload.terminate)
//   uploadUrl                resume this upload (HEAD, then PATCH from the server's offset)
//   urlStorage               a JSON file for tus.FileUrlStorage: the upload URL is stored
//                            there under the file's fingerprint, and a later run resumes
//                            through findPreviousUploads/resumeFromPreviousUpload
//   retryDelays              default [0, 200, 500, 1000, 2000]
//   timeoutMs                give up after this long (default 60000)
//
// Result (stdout, one JSON object): {ok, aborted, terminated, uploadUrl, resumedFrom,
// bytesSent, bytesTotal, requests: [{method, url, headers, status, responseHeaders,
// error}], error: {message, status} | null}. Exit code 0 when the scenario ran to its end
// (whatever the upload's outcome, which the result tells), 2 on a bad argument.

import { createReadStream } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const web = path.resolve(here, '..', '..', 'web')
const require = createRequire(path.join(web, 'package.json'))
const tus = require('tus-js-client')

const REQUEST_HEADERS = [
  'Upload-Length', 'Upload-Defer-Length', 'Upload-Offset', 'Upload-Concat',
  'Upload-Metadata', 'Content-Type', 'X-HTTP-Method-Override', 'Authorization'
]
const RESPONSE_HEADERS = ['Upload-Offset', 'Upload-Length', 'Location', 'Upload-Concat']

function fail (message) {
  process.stdout.write(JSON.stringify({ ok: false, error: { message, status: null } }) + '\n')
  process.exit(2)
}

let args
try {
  args = JSON.parse(process.argv[2] || '')
} catch (err) {
  fail(`the argument must be JSON: ${err.message}`)
}
if (!args.file) fail('"file" is required')
if (!args.endpoint && !args.uploadUrl) fail('"endpoint" or "uploadUrl" is required')

const requests = []
const entries = new Map()
const result = {
  ok: false,
  aborted: false,
  terminated: false,
  uploadUrl: null,
  resumedFrom: null,
  bytesSent: 0,
  bytesTotal: null,
  requests,
  error: null
}

function pick (get, names) {
  const out = {}
  for (const name of names) {
    const value = get(name)
    if (value !== undefined && value !== null) out[name] = String(value)
  }
  return out
}

// The input: a path-backed ReadStream (tus-js-client re-reads it from disk on retries),
// or, for a deferred length, a plain Readable whose size the client cannot know up front.
function openInput () {
  if (args.uploadLengthDeferred) return Readable.from(createReadStream(args.file))
  return createReadStream(args.file)
}

const options = {
  endpoint: args.endpoint || null,
  uploadUrl: args.uploadUrl || null,
  headers: args.headers || {},
  metadata: args.metadata || { filename: path.basename(args.file), filetype: 'application/octet-stream' },
  chunkSize: args.chunkSize == null ? Number.POSITIVE_INFINITY : args.chunkSize,
  uploadDataDuringCreation: Boolean(args.uploadDataDuringCreation),
  uploadLengthDeferred: Boolean(args.uploadLengthDeferred),
  parallelUploads: args.parallelUploads || 1,
  overridePatchMethod: Boolean(args.overridePatchMethod),
  retryDelays: args.retryDelays || [0, 200, 500, 1000, 2000],
  storeFingerprintForResuming: Boolean(args.urlStorage),
  removeFingerprintOnSuccess: Boolean(args.urlStorage),
  onBeforeRequest (req) {
    const entry = {
      method: req.getMethod(),
      url: req.getURL(),
      headers: pick((name) => req.getHeader(name), REQUEST_HEADERS),
      status: null,
      responseHeaders: {},
      error: null
    }
    entries.set(req, entry)
    requests.push(entry)
  },
  onAfterResponse (req, res) {
    const entry = entries.get(req)
    if (!entry) return
    entry.status = res.getStatus()
    entry.responseHeaders = pick((name) => res.getHeader(name), RESPONSE_HEADERS)
  }
}
if (args.urlStorage) options.urlStorage = new tus.FileUrlStorage(args.urlStorage)

let finished = false
function finish () {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
}

function describe (err) {
  const res = err && err.originalResponse
  return { message: String(err && err.message), status: res ? res.getStatus() : null }
}

const timer = setTimeout(() => {
  result.error = { message: `timed out after ${args.timeoutMs || 60000} ms`, status: null }
  finish()
}, args.timeoutMs || 60000)

async function run () {
  let upload = null
  const done = new Promise((resolve) => {
    options.onError = (err) => {
      // Requests that died without a response (a reset connection) keep status null;
      // note the cause on the last such request for the test to see.
      const open = requests.filter((r) => r.status === null)
      if (open.length > 0) open[open.length - 1].error = String(err.message).slice(0, 300)
      result.error = describe(err)
      resolve()
    }
    options.onSuccess = () => {
      result.ok = true
      resolve()
    }
    options.onProgress = (sent, total) => {
      result.bytesSent = sent
      result.bytesTotal = total
      if (args.abortAfterBytes != null && sent >= args.abortAfterBytes && !result.aborted) {
        result.aborted = true
        result.uploadUrl = upload.url
        upload.abort(Boolean(args.terminate)).then(
          () => {
            result.terminated = Boolean(args.terminate)
            resolve()
          },
          (err) => {
            result.error = describe(err)
            resolve()
          }
        )
      }
    }
  })
  upload = new tus.Upload(openInput(), options)
  if (args.urlStorage) {
    const previous = await upload.findPreviousUploads()
    if (previous.length > 0) {
      upload.resumeFromPreviousUpload(previous[0])
      result.resumedFrom = previous[0].uploadUrl
    }
  }
  upload.start()
  await done
  result.uploadUrl = upload.url || result.uploadUrl
  if (result.ok && args.terminate && !result.aborted) {
    await tus.Upload.terminate(upload.url, options)
    result.terminated = true
  }
}

run().then(
  () => {
    clearTimeout(timer)
    finish()
  },
  (err) => {
    clearTimeout(timer)
    result.error = describe(err)
    finish()
  }
)
